"""Training beyond one process: DDP on gloo (CPU), global negatives, accumulation, AMP, logging.

The two-process runs fork from this process (no second import of torch and transformers, which
takes longer than the training itself) and join the process group from torchrun's environment
variables, as ``tseg train`` under torchrun does; one test launches the real torchrun.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from conftest import MICRO, torchrun_env
from safetensors.torch import load_file
from tokenizers import Tokenizer

import tseg.train.build as build
from tseg.checkpoint import resolve
from tseg.config import ConfigError, build_config
from tseg.data.pipeline import EpochSampler
from tseg.errors import TrainingError
from tseg.models.text_encoder import wrap_tokenizer
from tseg.train import train

# SGD without warm-up, so that a few steps move the weights measurably and nothing in the
# update hides a gradient difference (Adam would amplify rounding noise in tiny gradients).
SGD = [
    *MICRO,
    "train.optimizer=sgd",
    "train.lr=0.1",
    "train.warmup_steps=0",
    "train.steps=4",
    "train.save_every=0",
    "train.threads=1",
]


def _weights(run):
    return load_file(str(resolve(run) / "model.safetensors"))


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_dropout(monkeypatch):
    """BERT's dropout draws different masks in one process than in two; zero it (the only
    randomness in the forward pass of the micro model: drop_path is 0)."""
    real = build.build_model

    def without(cfg, ds):
        model = real(cfg, ds)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        return model

    monkeypatch.setattr(build, "build_model", without)


_VOCABULARIES: dict = {}


def _one_vocabulary(monkeypatch):
    """tokenizers' WordPiece trainer numbers tied pieces differently from one call to the next
    (e.g. 'circ' and 'cross' swap ids), so runs compared here must share one vocabulary: the
    first one trained, which forked processes inherit."""
    real = build.train_tokenizer

    def train_tokenizer(texts, vocab_size):
        key = (tuple(texts), vocab_size)
        if key not in _VOCABULARIES:
            _VOCABULARIES[key] = real(texts, vocab_size).backend_tokenizer.to_str()
        return wrap_tokenizer(Tokenizer.from_str(_VOCABULARIES[key]))

    monkeypatch.setattr(build, "train_tokenizer", train_tokenizer)


def _train(overrides, resume=False):
    train(build_config(None, overrides), progress=False, evaluate_splits=(), resume=resume)


def _rank_main(rank, world, port, out):
    """One forked process: torchrun's environment, then the training runs the tests compare."""
    torchrun_env(rank, world, port)
    with pytest.MonkeyPatch.context() as mp_:
        _without_dropout(mp_)
        _train([*SGD, "train.batch_size=4", f"train.out_dir={out / 'global'}"])
        local = [*SGD, "train.batch_size=4", "train.ddp_negatives=local"]
        _train([*local, f"train.out_dir={out / 'local'}"])
    # Resume (dropout on: each rank's random state must come back): 2 processes x batch 4 x 2
    # micro-batches; 24 images = 3 global micro-batches per epoch, so step 2 stops mid-epoch.
    # The tiny preset's 50 warm-up steps make the learning rate independent of train.steps.
    resume = [*MICRO, "train.batch_size=4", "train.accum_steps=2", "train.threads=1"]
    _train([*resume, "train.steps=4", f"train.out_dir={out / 'whole'}"])
    _train([*resume, "train.steps=2", f"train.out_dir={out / 'parts'}"])
    _train([*resume, "train.steps=4", f"train.out_dir={out / 'parts'}"], resume=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with batch 8, one accumulating 2 x 4, then the two-process runs."""
    out = tmp_path_factory.mktemp("ddp")
    with pytest.MonkeyPatch.context() as mp_:
        _one_vocabulary(mp_)
        with pytest.MonkeyPatch.context() as no_drop:
            _without_dropout(no_drop)
            _train([*SGD, "train.batch_size=8", f"train.out_dir={out / 'one'}"])
            acc = [*SGD, "train.batch_size=4", "train.accum_steps=2"]
            _train([*acc, f"train.out_dir={out / 'acc'}"])
        # Fork, not spawn: the children inherit the imported modules (importing torch and
        # transformers again takes longer than these runs) and the vocabulary. train.threads=1
        # in every run keeps OpenMP out of trouble in the forked children.
        mp.start_processes(
            _rank_main, args=(2, _free_port(), out), nprocs=2, join=True, start_method="fork"
        )
    return out


def test_sampler_shards_make_up_the_global_batch():
    n, b, world = 30, 4, 3
    one = list(EpochSampler(n, seed=5, batch_size=b * world))
    shards = [
        list(EpochSampler(n, 5, rank=r, world_size=world, batch_size=b)) for r in range(world)
    ]
    assert all(len(s) == n // (b * world) * b for s in shards)
    for k in range(n // (b * world)):  # global batch k = rank 0's k-th batch + rank 1's + ...
        joined = [i for s in shards for i in s[k * b : (k + 1) * b]]
        assert joined == one[k * b * world : (k + 1) * b * world]
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == len(flat)  # disjoint
    # A resumed epoch starts at a global batch boundary; the next epoch has another order.
    late = EpochSampler(n, 5, rank=1, world_size=world, batch_size=b)
    late.set_epoch(0, start=b * world)
    assert list(late) == shards[1][b:]
    late.set_epoch(1)
    assert list(late) != shards[1]
    with pytest.raises(ValueError, match="rank 3"):
        EpochSampler(n, 5, rank=3, world_size=3)


def test_two_processes_match_one_process_with_twice_the_batch(runs):
    """2 x batch 4 with global negatives == 1 x batch 8; with local negatives it equals one
    process accumulating 2 x batch 4 (each micro-batch scored against its own texts)."""
    one, acc = _weights(runs / "one"), _weights(runs / "acc")
    ddp_global, ddp_local = _weights(runs / "global"), _weights(runs / "local")
    # Remaining differences are rounding: matrix products over 4 rows instead of 8, the
    # all-reduce's summation order, padding of each rank's texts to its own longest.
    assert _max_diff(ddp_global, one) < 1e-5
    assert _max_diff(ddp_local, acc) < 1e-5
    # ... and the negatives matter, so the comparison above can fail.
    assert _max_diff(ddp_global, ddp_local) > 1e-2
    assert _max_diff(one, acc) > 1e-2


def test_resume_under_two_processes_is_exact(runs):
    whole, parts = runs / "whole", runs / "parts"
    a, b = _weights(whole), _weights(parts)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = load_file(str(resolve(parts) / "train_state.safetensors"))
    assert "rng.torch" in state and "rng.torch.1" in state  # one random state per rank
    assert not torch.equal(state["rng.torch"], state["rng.torch.1"])
    start = json.loads((whole / "log.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2 and start["effective_batch"] == 16


def test_accumulation_matches_the_large_batch_in_full_mode(tmp_path, monkeypatch):
    """Full mode: Dice is a mean over (image, expression) pairs, one pair per image here, so
    2 micro-batches of 4 give the gradient of one batch of 8, clipped after accumulating."""
    _without_dropout(monkeypatch)
    _one_vocabulary(monkeypatch)
    full = [*SGD, "train.mode=full", "data.expressions_per_image=1", "train.grad_clip=1e9"]
    _train([*full, "train.batch_size=8", f"train.out_dir={tmp_path / 'big'}"])
    _train(
        [*full, "train.batch_size=4", "train.accum_steps=2", f"train.out_dir={tmp_path / 'acc'}"]
    )
    assert _max_diff(_weights(tmp_path / "big"), _weights(tmp_path / "acc")) < 1e-5

    def norms(run):
        return [
            r["grad_norm"]
            for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
            if "grad_norm" in r
        ]

    assert norms(tmp_path / "big") == pytest.approx(norms(tmp_path / "acc"), rel=1e-4)
    assert len(norms(tmp_path / "big")) == 4


def test_bf16_on_cpu_trains_and_fp16_on_cpu_is_refused(tmp_path):
    _train([*MICRO, "train.amp=bf16", "train.steps=2", f"train.out_dir={tmp_path / 'bf16'}"])
    log = [json.loads(x) for x in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert log[0]["amp"] == "bf16"
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log if "loss" in r)
    with pytest.raises(TrainingError, match="'train.amp' = 'fp16' needs a CUDA device"):
        _train([*MICRO, "train.amp=fp16", "train.device=cpu", f"train.out_dir={tmp_path / 'x'}"])
    for bad, key in [
        ("train.amp=fp8", "train.amp"),
        ("train.ddp_negatives=all", "train.ddp_negatives"),
        ("train.accum_steps=0", "train.accum_steps"),
    ]:
        with pytest.raises(ConfigError, match=key):
            build_config(None, [bad])


def test_jsonl_and_tensorboard_logs(tmp_path, monkeypatch):
    pytest.importorskip("torch.utils.tensorboard")
    run = tmp_path / "tb"
    _train([*MICRO, "train.tensorboard=true", f"train.out_dir={run}"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["world_size"] == 1
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [0, 1, 2]
    assert {"loss", "lr", "tau", "images_per_s", "images", "time_s"} <= set(steps[0])
    assert steps[-1]["images"] == 3 * 8
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    # Without the package: a clear error before any training.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(TrainingError, match=r"pip install 'tseg\[tb\]'"):
        _train([*MICRO, "train.tensorboard=true", f"train.out_dir={tmp_path / 'no'}"])
    assert not (tmp_path / "no").exists()


def test_torchrun_launches_tseg_train(tmp_path):
    """The real launcher: two processes, one JSON summary, rank 0's log and checkpoint."""
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "tseg.cli",
        "train",
        *MICRO,
        "train.batch_size=4",
        "train.accum_steps=2",
        "train.grad_clip=1.0",
        "train.threads=1",
        "--quiet",
        "--out",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # exactly one process printed
    assert summary["steps"] == 3 and 0.0 <= summary["val"]["miou"] <= 1.0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2 and log[0]["effective_batch"] == 16
    assert len([r for r in log if "loss" in r]) == 3  # rank 0 alone wrote the log
    assert resolve(run).name == "ckpt-0000003"
