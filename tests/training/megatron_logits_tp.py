"""Megatron's logits for given token ids from a checkpoint loaded at tensor parallelism TP (TP gloo
processes, each holding its shard of every layer and of the vocabulary; the vocabulary-parallel
logits are gathered at the end).

Run as a subprocess by the import tests (it starts its own ranks):
``python tests/training/megatron_logits_tp.py OUT.pt IDS.json TP CHECKPOINT [CHECKPOINT ...]``; OUT maps
each checkpoint to its logits.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
from pathlib import Path

import torch


def _rank(rank: int, tp: int, port: int, checkpoints: list[str], ids_path: str, out: str) -> None:
    from megatron.core import parallel_state, tensor_parallel

    from training import cpu_compat
    from training.checkpoint import find_checkpoint, load_checkpoint
    from training.config import config_from_dict
    from training.model import Runtime, build_model

    cpu_compat.activate()
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=tp)
    parallel_state.initialize_model_parallel(tp, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(1234)
    ids = torch.tensor(json.loads(Path(ids_path).read_text()))
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    results = {}
    for checkpoint in checkpoints:
        ref = find_checkpoint(checkpoint)
        config = config_from_dict(ref.meta["config"])
        config = dataclasses.replace(config, precision="fp32", transformer_impl="local",
                                     parallel=dataclasses.replace(config.parallel, tensor=tp, pipeline=1, data=1,
                                                                  sequence_parallel=False))
        vocab_size = int(ref.meta["vocab_size"])
        model = build_model(config, Runtime.detect(config), vocab_size)
        load_checkpoint(ref, model)
        model.eval()
        with torch.no_grad():
            shard = model(input_ids=ids, position_ids=positions, attention_mask=None)  # [b, s, padded vocab / tp]
            logits = tensor_parallel.gather_from_tensor_model_parallel_region(shard)
        results[checkpoint] = {"logits": logits[..., :vocab_size], "shard_columns": shard.shape[-1]}
    if rank == 0:
        torch.save(results, out)
    torch.distributed.barrier()
    parallel_state.destroy_model_parallel()
    torch.distributed.destroy_process_group()


def main(out: str, ids_path: str, tp: str, *checkpoints: str) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(int(tp), port, list(checkpoints), ids_path, out), nprocs=int(tp), join=True,
                       start_method="spawn")


if __name__ == "__main__":
    main(*sys.argv[1:])
