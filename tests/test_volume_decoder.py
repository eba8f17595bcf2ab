"""The decoder with cross-slice layers: starts exactly at the 2D decoder, never changes the encoder, decodes whole
volumes in the synthesizer when switched on."""

import os

import numpy as np
import pytest
import torch
from scripts.errors import Gem3dInputError
from scripts.networks.volume_decoder import VolumeDecoder
from tiny_model import build_synthesizer, make_tiny_model, parser_with


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("tinymodel")
    return make_tiny_model(str(root / "models"), os.path.dirname(tiny_demo))


def _networks(tiny):
    parser = parser_with(tiny)
    ae = parser.get_parsed_content("autoencoder_def")
    ae.load_state_dict(torch.load(os.path.join(tiny["model_dir"], "autoencoder.pt"), weights_only=True))
    return ae.eval(), VolumeDecoder(ae, kernel_size=3).eval()


def test_starts_at_the_2d_decoder_and_keeps_the_encoder(tiny):
    ae, vd = _networks(tiny)
    assert vd.autoencoder is not ae  # the shared 2D autoencoder is never rewired
    z = torch.randn(2, 12, 4, 8, 8)  # two stacks of 12 slice latents
    with torch.no_grad():
        ours = vd.decode(z)
        ref = ae.decode(z.flatten(0, 1)).unflatten(0, (2, 12))
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    # only the cross-slice layers train by default; with train_spatial the decoder too, never the encoder side
    trainable = {n for n, p in vd.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("temporal.") for n in trainable)
    spatial = VolumeDecoder(ae, train_spatial=True)
    names = {n for n, p in spatial.named_parameters() if p.requires_grad}
    assert any(n.startswith("autoencoder.decoder.") for n in names)
    assert not any(n.startswith(("autoencoder.encoder.", "autoencoder.quant_conv")) for n in names)

    # one optimiser step on a stack: the cross-slice layers move, every autoencoder tensor stays bit-identical
    before = {k: v.clone() for k, v in vd.state_dict().items()}
    vd.train()
    vd.latent_noise = 0.3
    opt = torch.optim.SGD([p for p in vd.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(2, 1, 32, 32, 12)
    recon, mu, _ = vd(x)
    assert recon.shape == x.shape and mu.shape[0] == 24
    torch.abs(recon - x).mean().backward()
    opt.step()
    after = vd.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("autoencoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("temporal."))
    # a slice's decoding now depends on its neighbours (the point of the layers), and the encoder is unchanged
    with torch.no_grad():
        z = torch.randn(1, 12, 4, 8, 8)
        shifted = z.clone()
        shifted[0, 7] += 1.0
        a, b = vd.decode(z), vd.decode(shifted)
        assert not torch.equal(a[0, 6], b[0, 6]) and torch.equal(a[0, 0], b[0, 0])
        torch.testing.assert_close(vd.encode(x[0, :, :, :, 0][None])[0], ae.encode(x[0, :, :, :, 0][None])[0])


def test_synthesizer_switch(tiny, tiny_demo, tmp_path):
    item_mask = os.path.join(os.path.dirname(tiny_demo), "labelsTs")
    mask = os.path.join(item_mask, sorted(os.listdir(item_mask))[0])
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    base = synth.synthesize(mask, 1, "case")
    with synth.variant({"decoder": "volume"}):
        vol = synth.synthesize(mask, 1, "case")
    assert base["record"]["decoder"] == "slice" and vol["record"]["decoder"] == "volume"
    assert vol["image"].shape == base["image"].shape and np.isfinite(vol["image"]).all()
    assert not np.array_equal(vol["image"], base["image"])
    assert synth.decoder == "slice"
    with pytest.raises(Gem3dInputError, match="decoder must be 'slice' or 'volume'"):
        with synth.variant({"decoder": "3d"}):
            pass
    assert synth.decoder == "slice"
