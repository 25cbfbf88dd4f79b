"""One rank of the 2-process test run (tests/test_distributed.py): the 64x64 stage on tiny data, with a record of
what this rank was given.

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py DATA RECORDS [--fail-rank R]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from fastai.callback.core import Callback
from fastai.torch_core import num_distrib, rank_distrib

from helpers import distributed


class Record(Callback):
    """Writes RECORDS/rank{N}.json: the training files of this rank's shard per epoch, its validation files and the
    pixels its Dice metric counted in the last validation."""

    order = 12  # after fastai's DistributedTrainer (11) has put its DistributedDL in place

    def __init__(self, folder: Path):
        self.folder, self.shards = folder, []

    def before_train(self):
        dl = self.learn.dl
        if not getattr(dl, "recorded", False):
            get_idxs = dl.get_idxs

            def recorded():
                idxs = get_idxs()
                self.shards.append([dl.dataset.items[i].name for i in idxs])
                return idxs

            dl.get_idxs, dl.recorded = recorded, True

    def after_fit(self):
        dice = next(m for m in self.learn.metrics if type(m).__name__ == "DiceMulti")
        record = {"world_size": num_distrib(), "shards": self.shards,
                  "valid": [p.name for p in self.learn.dls.valid_ds.items],
                  "dice_pixels": sum(dice.union.values()) / 2}
        (self.folder / f"rank{rank_distrib()}.json").write_text(json.dumps(record))


class FailIn(Callback):
    """Raises in one rank at its second training batch, while the other waits for it in DDP's gradient sync."""

    def __init__(self, rank: int):
        self.rank, self.batches = rank, 0

    def before_batch(self):
        self.batches += self.training
        if self.training and self.batches == 2 and rank_distrib() == self.rank:
            raise RuntimeError(f"injected failure in rank {self.rank}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("records", type=Path)
    ap.add_argument("--fail-rank", type=int)
    args = ap.parse_args(argv)
    stage = replace(distributed.default_stage(64), data_path=args.data, epochs=2, batchsize=4, lr=1e-3,
                    precision="fp32")
    cbs = [Record(args.records)] + ([FailIn(args.fail_rank)] if args.fail_rank is not None else [])
    return distributed.run_and_report(stage, cbs)


if __name__ == "__main__":
    sys.exit(main())
