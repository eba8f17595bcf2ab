"""Dataset enhancement: every mask of a datalist section synthesized k times, sharded over distributed ranks.

Used by ``inference.json`` (the main job: the demo test masks once), ``enhance.json`` (a whole datalist k times,
``torchrun`` for several processes) and the evaluation rows.
"""

from __future__ import annotations

import logging
import os

import ignite.distributed as idist
from monai.data import partition_dataset

from ..data.datalist import read_datalist
from ..errors import Gem3dInputError
from ..io import save_json
from .results import write_result

logger = logging.getLogger(__name__)


def job_name(case_id: str, repeat: int, seed: int) -> str:
    """Output name of one enhancement job; also the file names the new datalist points at."""
    return f"{case_id}_gem3d_r{repeat}_s{seed}"


def run_datalist(
    synth,
    datalist: str,
    section: str,
    output_dir: str,
    repeats: int = 1,
    seed: int = 0,
    overwrite: bool = False,
    limit: int | None = None,
    write_datalist: bool = True,
) -> list[dict]:
    """Synthesize every mask of a datalist section ``repeats`` times with ``synth`` (a ``Synthesizer``); this
    rank's share.

    Jobs are numbered (case, repeat); MONAI's ``partition_dataset`` gives rank r the jobs r, r + world, ...: no job
    is done twice or lost. The seed of a job depends only on its number, so sharding does not change any output.
    Rank 0 writes the datalist of the new dataset (with the model's label set) after all ranks are done.
    """
    items = read_datalist(datalist, (section,))[section]
    items = items[: int(limit)] if limit else items
    if any("label" not in it for it in items):
        raise Gem3dInputError(f"datalist {datalist} section {section}: every case needs a label (mask)")
    os.makedirs(output_dir, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise Gem3dInputError(f"output folder {output_dir} is not writable")
    jobs = [
        (j, i, r, job_name(items[i]["id"], r, seed + j))
        for j, (i, r) in enumerate((i, r) for r in range(int(repeats)) for i in range(len(items)))
    ]
    rank, world = idist.get_rank(), idist.get_world_size()
    done = []
    for j, i, r, name in partition_dataset(jobs, num_partitions=world, shuffle=False)[rank]:
        item = items[i]
        result = synth.synthesize(item["label"], seed + j, item["id"], image_path=item.get("image"))
        paths = write_result(result, output_dir, name, overwrite)
        done.append({"job": j, "name": name, "rank": rank, **paths})
        logger.info(f"[rank {rank}] {name}: {result['record']['seconds']} s")
    if write_datalist:
        idist.barrier()
        if rank == 0:
            entries = [
                {
                    "image": f"images/{name}.nii.gz",
                    "label": f"labels/{name}.nii.gz",
                    "source": items[i]["id"],
                    "repeat": r,
                }
                for _, i, r, name in jobs
            ]
            content = {
                "name": "gem3d-enhanced",
                "source_datalist": os.path.abspath(datalist),
                **synth.cfg["labels"].as_dict(),
                "repeats": int(repeats),
                "training": entries,
            }
            save_json(content, os.path.join(output_dir, "datalist.json"), overwrite=True)
    return done
