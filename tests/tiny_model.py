"""A tiny GEM-3D (random weights, small channels) declared by the real configs plus overrides, for fast tests."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from conftest import CONFIGS
from monai.bundle import ConfigParser

TINY_OVERRIDES = {
    "image_size": 32,
    "window": 8,
    "steps": 3,
    "autoencoder_def#channels": [8, 8, 8],
    "autoencoder_def#norm_num_groups": 4,
    "unet_blocks#channels": [16, 16, 16],
    "unet_blocks#norm_num_groups": 8,
    "unet_blocks#num_head_channels": 8,
    "medlord_autoencoder_def#channels": [8, 8, 8],
    "medlord_autoencoder_def#norm_num_groups": 4,
    "medlord_unet_blocks#channels": [16, 16, 16],
    "medlord_unet_blocks#norm_num_groups": 8,
    "medlord_unet_blocks#num_head_channels": 8,
    "medlord_steps": 3,
    "joint_unet_def#unet#channels": [16, 16, 16],
    "joint_unet_def#unet#norm_num_groups": 8,
    "joint_unet_def#unet#num_head_channels": 8,
    "joint_steps": 3,
}


TINY_SPACING = [2 * s for s in (2.359375, 2.9375, 2.484375)]


def parser_with(overrides: dict, configs=("inference.json",)) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, c) for c in configs])
    parser.read_meta(os.path.join(CONFIGS, "metadata.json"))
    parser.update(overrides)
    return parser


def make_tiny_model(model_dir: str, dataset_dir: str) -> dict:
    """Write random tiny weights + latent scale into ``model_dir``; return the overrides that select them."""
    os.makedirs(model_dir, exist_ok=True)
    overrides = {**TINY_OVERRIDES, "model_dir": model_dir, "dataset_dir": dataset_dir}
    parser = parser_with(overrides)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("autoencoder_def").state_dict(), os.path.join(model_dir, "autoencoder.pt"))
    torch.save(parser.get_parsed_content("window_unet_def").state_dict(), os.path.join(model_dir, "volume.pt"))
    torch.save(parser.get_parsed_content("informed_unet_def").state_dict(), os.path.join(model_dir, "informed.pt"))
    torch.save(parser.get_parsed_content("segmenter_def").state_dict(), os.path.join(model_dir, "segmenter.pt"))
    for name in ("medlord_autoencoder", "medlord_unet", "medlord_controlnet"):
        torch.save(parser.get_parsed_content(f"{name}_def").state_dict(), os.path.join(model_dir, f"{name}.pt"))
    for name in ("joint_autoencoder", "joint_unet"):
        torch.save(parser.get_parsed_content(f"{name}_def").state_dict(), os.path.join(model_dir, f"{name}.pt"))
    write_volume_decoder(parser, model_dir)
    write_attribute_table(dataset_dir, os.path.join(model_dir, "joint_attributes.json"))
    for name in ("latent_scale.json", "medlord_latent_scale.json", "joint_latent_scale.json"):
        with open(os.path.join(model_dir, name), "w") as f:
            json.dump({"scale": 1.0}, f)
    # the tiny demo set's voxel size (its 32^3 grid spans the same template as the 64^3 demo)
    with open(os.path.join(model_dir, "model_grid.json"), "w") as f:
        json.dump({"size": 32, "spacing": TINY_SPACING, "slices": [32, 32]}, f)
    return overrides


def write_volume_decoder(parser: ConfigParser, model_dir: str) -> None:
    """The decoder with cross-slice layers around the tiny autoencoder, its cross-slice layers random (not zero, so
    that decoding with it differs from the 2D decoder)."""
    net = parser.get_parsed_content("volume_decoder_def")
    net.autoencoder.load_state_dict(torch.load(os.path.join(model_dir, "autoencoder.pt"), weights_only=True))
    with torch.no_grad():
        for param in net.temporal.parameters():
            param.normal_(0.0, 0.1)
    torch.save(net.state_dict(), os.path.join(model_dir, "volume_decoder.pt"))


def write_attribute_table(dataset_dir: str, path: str) -> None:
    """The joint model's tumour-vector table from the training labels of the demo set in ``dataset_dir``."""
    import nibabel as nib
    from scripts.data.label_set import BRATS
    from scripts.data.tumour_attributes import AttributeTable, tumour_attributes

    datalist = json.load(open(os.path.join(dataset_dir, "datalist.json")))
    rows = []
    for item in datalist["training"]:
        img = nib.load(os.path.join(dataset_dir, item["label"]))
        spacing = img.header.get_zooms()[:3]
        rows.append(tumour_attributes(np.asarray(img.dataobj), spacing, BRATS.lesion_labels))
    with open(path, "w") as f:
        json.dump(AttributeTable(rows).as_dict(), f)


def build_synthesizer(overrides: dict, **extra):
    parser = parser_with({**overrides, **extra})
    return parser.get_parsed_content("synthesizer")
