"""Where a resume departs from the uninterrupted run: digests of everything each step reads.

    python benchmarks/gpu_resume_digest.py [--work DIR] [--tokenizer DIR] [--out digest.json]
    python benchmarks/gpu_resume_digest.py --cpu-bf16 ...   (CPU: bf16 forced past the config's GPU check)

The resume phase of ``benchmarks/gpu_check.py`` (same configuration: 9 steps straight; 6 steps, a stop
and a resume to 9), each run in a fresh process with a trainer that records, at the start of every
step: SHA-256 digests of the bf16 weights, the fp32 main parameters, exp_avg and exp_avg_sq (overall
and per tensor), the Adam step counters, the scheduler's step, the step's token batch, and the loss of
an extra forward-only pass over that batch. The report names, for every resumed step, what differs
from the straight run. Reading it (an H200 run was not bit-exact from step 7 on):

- a state digest differs at step 7: the checkpoint did not restore that state (the item says which);
- every digest equal at step 7 but the forward-only loss differs: the GPU kernels depend on the
  process's history (same inputs, different results), not on anything a checkpoint holds.

On CPU (``--cpu-bf16``) everything is equal (the bf16 machinery of megatron-core runs on CPU; the
configuration refuses bf16 there only because it is slow and untested for real training).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

STATE_KEYS = ("bf16_weights", "main_params", "exp_avg", "exp_avg_sq")


def _sha(tensors: list) -> tuple[str, list[str]]:
    import torch

    per_tensor, overall = [], hashlib.sha256()
    for t in tensors:
        raw = t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        per_tensor.append(hashlib.sha256(raw).hexdigest()[:16])
        overall.update(raw)
    return overall.hexdigest()[:16], per_tensor


def _digesting_trainer():
    import torch

    from training.data import microbatch_iterator, step_microbatches
    from training.trainer import Trainer

    class DigestTrainer(Trainer):
        records: list[dict[str, Any]]

        def train_step(self, first_sample: int) -> tuple[float, float]:
            record = {"step": first_sample // self.config.data.global_batch_size + 1}
            adam = getattr(self.optimizer.chained_optimizers[0], "optimizer", None)
            mains = [p for group in adam.param_groups for p in group["params"]]
            groups = {"bf16_weights": list(self.module.parameters()), "main_params": mains,
                      "exp_avg": [adam.state[p]["exp_avg"] for p in mains if "exp_avg" in adam.state[p]],
                      "exp_avg_sq": [adam.state[p]["exp_avg_sq"] for p in mains if "exp_avg_sq" in adam.state[p]]}
            for key, tensors in groups.items():
                record[key], record[f"{key}_per_tensor"] = _sha(tensors)
            record["adam_steps"] = sorted({float(adam.state[p]["step"]) for p in mains if "step" in adam.state[p]})
            record["scheduler_steps"] = self.scheduler.num_steps
            ranges = step_microbatches(first_sample, self.config, self.dp_rank)
            record["batch"], _ = _sha([b["tokens"] for b in microbatch_iterator(self.datasets.train, ranges,
                                                                                torch.device("cpu"))])
            with torch.no_grad():
                record["forward_only_loss"] = self._run_schedule(self.datasets.train, first_sample, forward_only=True)
            self.records.append(record)
            return super().train_step(first_sample)

    return DigestTrainer


def child(config_path: Path, out: Path, cpu_bf16: bool) -> None:
    """One run in this process (one rank), as ``training.rank.run_rank`` does, recording digests."""
    from training import cpu_compat
    from training.config import config_from_dict
    from training.model import Runtime
    from training.rank import init_distributed

    config = config_from_dict(json.loads(config_path.read_text()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    cpu_compat.activate()
    runtime = (Runtime(cuda=False, bf16=True, transformer_impl="local", sequence_parallel=False) if cpu_bf16
               else Runtime.detect(config))
    init_distributed(config, runtime)
    trainer = _digesting_trainer()(config, runtime)
    trainer.records = []
    trainer.run()
    from training.metrics import read_metrics

    losses = {r["step"]: r["loss"] for r in read_metrics(config.metrics_path)}
    for record in trainer.records:
        record["loss"] = losses.get(record["step"])
    out.write_text(json.dumps(trainer.records))


def compare(straight: list[dict[str, Any]], resumed: list[dict[str, Any]]) -> dict[str, Any]:
    """For each step both runs took: the items that differ (and, for state, which tensors)."""
    by_step = {r["step"]: r for r in straight}
    report = {}
    for record in resumed:
        other = by_step[record["step"]]
        differs = [k for k in record if not k.endswith("_per_tensor") and k != "step" and record[k] != other[k]]
        tensors = {k: [i for i, (a, b) in enumerate(zip(record[f"{k}_per_tensor"], other[f"{k}_per_tensor"],
                                                        strict=True)) if a != b]
                   for k in STATE_KEYS if k in differs}
        report[str(record["step"])] = {"differs": differs, "differing_tensors": tensors}
    first = min((int(s) for s, r in report.items() if r["differs"]), default=None)
    if first is None:
        verdict = "bit-exact: every digest and loss equal"
    elif any(k in report[str(first)]["differs"] for k in (*STATE_KEYS, "adam_steps", "scheduler_steps", "batch")):
        verdict = f"state not restored at step {first}: {report[str(first)]['differs']}"
    else:
        verdict = (f"state equal at step {first} but {report[str(first)]['differs']} differ: the kernels' results "
                   "depend on the process's history")
    return {"verdict": verdict, "first_differing_step": first, "steps": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--tokenizer", type=Path, help="a saved grammar tokenizer (see gpu_check.py)")
    parser.add_argument("--out", type=Path, help="write the report here too")
    parser.add_argument("--cpu-bf16", action="store_true", help="CPU: bf16 without the configuration's GPU check")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, cpu_bf16=args.cpu_bf16)
        return 0
    import gpu_check

    from training.config import config_to_dict

    work = args.work or Path(tempfile.mkdtemp(prefix="resume-digest-"))
    # gpu_check's default size (the same data as its recorded run); a small one on CPU.
    tokens = 60_000 if args.cpu_bf16 else 4_000_000
    blend = gpu_check.write_synthetic_blend(work / "blend", tokens=tokens, tokenizer_dir=args.tokenizer)
    variant = (["model.preset=tiny", "model.num_layers=2", "precision=bf16", "data.seq_length=64",
                "checkpoint.async_save=true"] if args.cpu_bf16 else gpu_check.RESUME_GPU)
    records = {}
    for name, run_dir, stop in (("straight", "straight", None), ("first", "split", 6), ("resumed", "split", None)):
        config = gpu_check.build_config(work / run_dir, blend, gpu_check.resume_overrides(stop, variant))
        config_path, out = work / f"{name}.config.json", work / f"{name}.digests.json"
        config_path.write_text(json.dumps(config_to_dict(config)))
        command = [sys.executable, __file__, "--child", str(config_path), str(out)]
        done = subprocess.run(command + (["--cpu-bf16"] if args.cpu_bf16 else []), capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name} run failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        records[name] = json.loads(out.read_text())
    report = {"variant": variant, **compare(records["straight"], records["first"] + records["resumed"]),
              "losses": {name: [r["loss"] for r in rs] for name, rs in records.items()}}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":  # the checkpoint writer starts processes: the module must import safely
    raise SystemExit(main())
