"""The engines on two real processes over gloo (no Ray): DDP and DeepSpeed
ZeRO 0-3 take the same optimiser steps from the same data, and a saved
training state resumes to the same next step."""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kgscale.objectives import TrainModule
from kgscale.objectives.kalm import KaLM
from kgscale.train.config import TrainSettings
from kgscale.train.engines import make_engine
from tests.unit.objectives.test_kalm import kalm_batch
from tests.unit.objectives.tiny import tiny_llama

# stage 1 runs the same partitioned optimiser code as stage 2 (without gradient partitioning)
STRATEGIES = [("ddp", 0), ("deepspeed", 0), ("deepspeed", 2), ("deepspeed", 3)]


def _module() -> TrainModule:
    torch.manual_seed(0)
    return TrainModule(tiny_llama(), KaLM(lm_weight=0.5))


def _batches(rank: int) -> list[dict]:
    out = []
    for i in range(4):
        b = kalm_batch()
        g = torch.Generator().manual_seed(100 * rank + i)  # each rank, each micro-batch its own tokens
        for k in ("query_input_ids", "key_input_ids", "lm_input_ids"):
            b[k] = torch.where(b[k] > 2, torch.randint(3, 40, b[k].shape, generator=g), b[k])
        b["lm_labels"] = torch.where(b["lm_labels"] > 2, b["lm_input_ids"], b["lm_labels"])
        out.append(b)
    return out


def _run(strategy: str, stage: int, rank: int, ckpt: Path) -> dict:
    cfg = TrainSettings(strategy=strategy, zero_stage=stage, grad_accum_steps=2, max_steps=2, lr=1e-2, micro_batch_size=4)
    engine = make_engine(_module(), cfg, "fp32", torch.device("cpu"))
    losses, steps = [], 0
    for i, batch in enumerate(_batches(rank)):
        out, stepped = engine.micro_step(batch)
        losses.append(float(out.loss))
        steps += stepped
        if i == 1:
            engine.save(ckpt)
    full = engine.model_state_dict(rank)
    # a fresh engine restored from the step-1 state takes the same second step
    engine2 = make_engine(_module(), cfg, "fp32", torch.device("cpu"))
    engine2.load(ckpt)
    resumed = [float(engine2.micro_step(b)[0].loss) for b in _batches(rank)[2:]]
    full2 = engine2.model_state_dict(rank)
    result = {"losses": losses, "steps": steps, "resumed": resumed, "lr": engine.lr()}
    if rank == 0:
        result["weights"] = full
        result["max_diff_after_resume"] = max(float((full[k] - full2[k]).abs().max()) for k in full)
    return result


def _worker(rank: int, port: int, tmp: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for strategy, stage in STRATEGIES:
            ckpt = Path(tmp) / f"{strategy}{stage}"
            ckpt.mkdir(exist_ok=True)
            dist.barrier()
            results[(strategy, stage, rank)] = _run(strategy, stage, rank, ckpt)
    finally:
        dist.destroy_process_group()


def test_ddp_and_every_zero_stage_take_the_same_steps():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(port, tmp, results), nprocs=2, join=True)
    ref = results[("ddp", 0, 0)]
    assert ref["steps"] == 2  # 4 micro-batches, accumulation 2
    assert ref["losses"][2] < ref["losses"][0] or ref["losses"][3] < ref["losses"][1]
    for strategy, stage in STRATEGIES:
        for rank in (0, 1):
            r = results[(strategy, stage, rank)]
            assert r["steps"] == 2
            # same data, same maths: the same losses as DDP on that rank
            assert all(abs(a - b) < 1e-4 for a, b in zip(r["losses"], results[("ddp", 0, rank)]["losses"])), (strategy, stage)
            assert all(abs(a - b) < 1e-4 for a, b in zip(r["resumed"], r["losses"][2:])), (strategy, stage, "resume")
        r0 = results[(strategy, stage, 0)]
        assert r0["max_diff_after_resume"] < 1e-5
        diff = max(float((r0["weights"][k] - ref["weights"][k]).abs().max()) for k in ref["weights"])
        assert diff < 1e-4, (strategy, stage, diff)


class _PickledCode:
    """An object whose unpickling calls a function: what a tampered checkpoint carries."""

    def __reduce__(self):
        return (print, ("pickled code ran while loading a checkpoint",))


def test_a_ddp_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    import pickle

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        engine = make_engine(_module(), TrainSettings(strategy="ddp", max_steps=2, micro_batch_size=4), "fp32",
                             torch.device("cpu"))
        engine.save(tmp_path)
        engine.load(tmp_path)  # its own checkpoint loads
        state = torch.load(tmp_path / "ddp_state.pt", weights_only=True)
        state["scheduler"]["note"] = _PickledCode()
        torch.save(state, tmp_path / "ddp_state.pt")
        try:
            engine.load(tmp_path)
        except pickle.UnpicklingError:
            pass
        else:
            raise AssertionError("a checkpoint carrying pickled code was loaded")
        assert "pickled code ran" not in capsys.readouterr().out
    finally:
        dist.destroy_process_group()


def test_one_ddp_worker_trains_the_module_itself_with_the_same_steps():
    """A single worker's DDP engine runs without the DDP wrapper (nothing to
    synchronise) and takes exactly the steps of a plain loop: accumulation
    over two micro-batches, clipping, AdamW and the schedule."""
    from kgscale.train.engines import make_optimizer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        cfg = TrainSettings(strategy="ddp", grad_accum_steps=2, max_steps=2, lr=1e-2, micro_batch_size=4, grad_clip=0.5)
        engine = make_engine(_module(), cfg, "fp32", torch.device("cpu"))
        assert engine.ddp is engine.module
        plain = _module()
        opt, sched = make_optimizer(plain, cfg)
        stepped = []
        for i, batch in enumerate(_batches(0)):
            out, did_step = engine.micro_step(batch)
            stepped.append(did_step)
            (plain(batch).loss / 2).backward()
            if i % 2 == 1:
                torch.nn.utils.clip_grad_norm_([p for p in plain.parameters() if p.requires_grad], 0.5)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        assert stepped == [False, True, False, True]
        got, want = engine.model_state_dict(0), plain.state_dict()
        assert max(float((got[k] - want[k]).abs().max()) for k in want) == 0.0
    finally:
        dist.destroy_process_group()
