"""The CUDA-only code, checked without a GPU as far as PyTorch allows, and on the GPU where there is one.

Each test here failed on the code before it (issue 22), or runs a CUDA branch's own Python on the
CPU: a resume whose checkpoint is mapped onto another device (`meta`: no CPU storage at all), the
determinism flags `configure_device` sets for CUDA, a CUDA-graph capture (a sleeping eager stand-in)
kept out of `train_seconds`, and the graphed step's copy-in/replay path with the capture replaced by
eager calls. Tests parametrised by DEVICES also run on `cuda` when it is present (README, "What has
run on a GPU").
"""
import dataclasses
import os
import signal
import time

import pandas as pd
import pytest
import torch

from samedge import checkpoint, sam, train
from samedge.cli import build_parser
from samedge.cli.train import build_spec
from samedge.hvp import HVPOperator
from samedge.tracker import EigenTracker
from tests.test_sam import tiny_mlp_batch
from samedge.models import mse_loss

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                               reason="no CUDA device"))]
TIMING = ["train_seconds", "wall_seconds"]
CAPTURE_S = 1000.0  # the stand-in capture's sleep on the loop's clock: far above what the short run trains


def teacher_spec(out, repo_root, device="cpu", *sets):
    """A run of examples/teacher_student.py (data generated, no fetch): a few steps, measured often."""
    sets = ["train.max_steps=20", "train.measure_every_steps=5", "train.checkpoint_every_steps=null",
            "model.width=8", *sets]
    args = build_parser().parse_args(
        ["train", "--task", "teacher", "--lr", "1.0", "--rho", "0.05", "--profile", "example",
         "--params", str(repo_root / "params.yaml"), "--device", device, "--out", str(out),
         *(arg for s in sets for arg in ("--set", s))])
    return build_spec(args)


def metrics(out):
    return pd.read_csv(out / "metrics.csv").drop(columns=TIMING)


# ---------------------------------------------------------------------------------- resume
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_a_checkpoint_mapped_onto_another_device_resumes(tmp_path, repo_root):
    """On CUDA the old loader moved the saved CPU RNG state to the GPU and torch.set_rng_state
    refused it; `meta` (a device without any CPU storage) fails the same way here."""
    spec = teacher_spec(tmp_path / "run", repo_root)
    saver = train.Trainer(spec)
    torch.rand(3)  # the generator somewhere past the seed
    saver.save_checkpoint()
    saved = torch.get_rng_state()
    torch.rand(5)
    meta = train.Trainer(dataclasses.replace(spec, device=torch.device("meta")))  # reseeds the generator
    assert meta.try_resume()
    assert torch.equal(torch.get_rng_state(), saved)
    assert meta.state.resumes == 1


def test_the_cuda_generator_round_trips_through_a_checkpoint(tmp_path, monkeypatch):
    """Saved and restored for the run's CUDA device (mocked here: the generator's state is bytes)."""
    cuda, state = torch.device("cuda"), {"now": torch.arange(16, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: state["now"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda new, device: state.update(now=new))
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"cuda_rng": train.cuda_rng_state(cuda)})
    saved = state["now"]
    state["now"] = torch.zeros(16, dtype=torch.uint8)
    train.set_cuda_rng_state(checkpoint.load(path)["cuda_rng"], cuda)
    assert torch.equal(state["now"], saved) and state["now"].device.type == "cpu"
    assert train.cuda_rng_state(torch.device("cpu")) is None


def preempt_at_second_measurement(trainer, batch, grads, row):
    if row["step"] == 5:
        os.kill(os.getpid(), signal.SIGTERM)  # the run's own handler: checkpoint after this step, exit 143


@pytest.mark.parametrize("device", DEVICES)
def test_a_preempted_run_resumes_to_identical_metrics_on_each_device(device, tmp_path, repo_root, global_flags):
    """The checkpoint round trip of the device's tensors: model, tracker basis, both generators."""
    train.configure_device(torch.device(device))
    train.run(teacher_spec(tmp_path / "reference", repo_root, device))
    spec = teacher_spec(tmp_path / "cut", repo_root, device)
    with pytest.raises(SystemExit) as stop:
        train.Trainer(spec, on_measure=preempt_at_second_measurement).run()
    assert stop.value.code == train.PREEMPTED_EXIT_CODE
    assert (spec.checkpoint_dir / train.CHECKPOINT_FILE).is_file() and not (tmp_path / "cut").exists()
    record = train.run(teacher_spec(tmp_path / "cut", repo_root, device))
    assert record["resumes"] == 1 and record["device"].startswith(device)
    pd.testing.assert_frame_equal(metrics(tmp_path / "cut"), metrics(tmp_path / "reference"), check_exact=True)


# ---------------------------------------------------------------------------------- determinism
@pytest.fixture
def global_flags(monkeypatch):
    """configure_device changes process-wide settings: put every one back afterwards."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32,
             torch.get_float32_matmul_precision())
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved[2:6]
    torch.set_float32_matmul_precision(saved[6])


def test_configure_device_on_cuda_sets_every_determinism_flag(global_flags):
    torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = True
    torch.use_deterministic_algorithms(False)
    train.configure_device(torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("value, kept", [(":16:8", True), (":4096:8", True), (":0:0", False), ("", False)])
def test_a_deterministic_cublas_workspace_of_the_user_is_kept(value, kept, global_flags, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", value)
    train.configure_device(torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (value if kept else ":4096:8")


def test_a_cuda_run_is_configured_before_it_touches_the_model(global_flags, monkeypatch, tmp_path, repo_root):
    """cuBLAS reads its workspace setting at its first call, which the model's first step makes at
    the earliest: by then the variable and the flags must be set."""
    seen = {}

    class Stop(Exception):
        pass

    def first_model_work(self, spec, on_measure=None):
        seen.update(cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                    deterministic=torch.are_deterministic_algorithms_enabled(),
                    cudnn=torch.backends.cudnn.deterministic)
        raise Stop

    monkeypatch.setattr(train.Trainer, "__init__", first_model_work)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    spec = dataclasses.replace(teacher_spec(tmp_path / "run", repo_root), device=torch.device("cuda"))
    with pytest.raises(Stop):
        train.run(spec)
    assert seen == {"cublas": ":4096:8", "deterministic": True, "cudnn": True}


# ---------------------------------------------------------------------------------- the CUDA graph path
def eager_capture(calls, sleep=lambda seconds: None):
    """capture_graph's stand-in: the warm-up calls, a capture that sleeps CAPTURE_S, and a replay
    that rewrites the same output tensors in place, as a graph replay does."""
    def capture(step, device, warmup):
        for _ in range(warmup):
            step()
        sleep(CAPTURE_S)
        out = step()
        calls.append(device)

        def replay():
            new = step()
            for name in ("loss", "grad_norm", "grad", "sam_grad"):
                getattr(out, name).copy_(getattr(new, name))
        return replay, out
    return capture


@pytest.mark.parametrize("rho", [0.0, 0.1])
def test_the_graphed_step_copies_each_batch_in_and_equals_the_eager_step(rho, monkeypatch):
    calls = []
    monkeypatch.setattr(sam, "capture_graph", eager_capture(calls))
    model, x, y = tiny_mlp_batch()
    step = sam.GraphedSamGradient(model, mse_loss, (x[:10], y[:10]), rho)
    out_ids = {id(t) for t in (step.out.loss, step.out.grad, step.out.sam_grad)}
    for start in (10, 20, 0):
        batch = (x[start:start + 10], y[start:start + 10])
        replayed, eager = step(batch), sam.sam_gradient_tensors(model, mse_loss, batch, rho)
        assert {id(t) for t in (replayed.loss, replayed.grad, replayed.sam_grad)} == out_ids  # fixed addresses
        for name in ("loss", "grad_norm", "grad", "sam_grad"):
            assert torch.equal(getattr(replayed, name), getattr(eager, name)), name
        assert torch.equal(step.static[0][0], batch[0])
    with pytest.raises(ValueError, match="captured shapes"):
        step((x[:5], y[:5]))
    assert len(calls) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_real_graph_equals_the_eager_step_on_cuda():
    model, x, y = tiny_mlp_batch()
    model, x, y = model.cuda(), x.cuda(), y.cuda()
    step = sam.GraphedSamGradient(model, mse_loss, (x, y), 0.1)
    replayed, eager = step(), sam.sam_gradient_tensors(model, mse_loss, (x, y), 0.1)
    assert torch.equal(replayed.sam_grad, eager.sam_grad) and torch.equal(replayed.loss, eager.loss)


def test_the_graph_capture_stays_out_of_train_seconds(monkeypatch, tmp_path, repo_root):
    """train.cuda_graph through the real Trainer: the capture (a stand-in sleeping CAPTURE_S on the
    clock the loop reads, so a loaded machine cannot blur it) happens before the clock starts, and
    the graphed run's metrics equal the eager run's."""
    calls, slept = [], [0.0]
    real_clock = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + slept[0])
    monkeypatch.setattr(sam, "capture_graph", eager_capture(calls, lambda seconds: slept.__setitem__(0, slept[0] + seconds)))
    monkeypatch.setattr(train, "graphable", lambda device: True)
    eager = train.run(teacher_spec(tmp_path / "eager", repo_root))
    start = time.perf_counter()
    spec = teacher_spec(tmp_path / "graphed", repo_root)
    spec.cfg["train"]["cuda_graph"] = True  # not a key of the example profile, so not settable by --set
    graphed = train.run(spec)
    assert len(calls) == 1 and time.perf_counter() - start >= CAPTURE_S
    assert graphed["train_seconds"] < CAPTURE_S, graphed["train_seconds"]
    assert pd.read_csv(tmp_path / "graphed" / "metrics.csv")["train_seconds"].max() < CAPTURE_S
    assert eager["steps"] == graphed["steps"]
    pd.testing.assert_frame_equal(metrics(tmp_path / "graphed"), metrics(tmp_path / "eager"), check_exact=True)


# ---------------------------------------------------------------------------------- HVPs and the tracker
@pytest.mark.parametrize("device", DEVICES)
def test_hvps_on_the_device_match_the_dense_cpu_hessian(device, tmp_path):
    """Chunks on the CPU move to the model's device one at a time; vectors move to it too."""
    model, x, y = tiny_mlp_batch()
    model64 = model.double()
    dense = torch.autograd.functional.hessian(
        lambda *ps: mse_loss(torch.func.functional_call(model64, dict(zip(
            [n for n, _ in model64.named_parameters()], ps)), (x.double(),)), y),
        tuple(p.detach() for p in model64.parameters()))
    sizes = [p.numel() for p in model64.parameters()]
    full = torch.cat([torch.cat([dense[i][j].reshape(sizes[i], sizes[j]) for j in range(len(sizes))], 1)
                      for i in range(len(sizes))])
    on_device = model64.to(device)
    op = HVPOperator(on_device, mse_loss, [(x[:15].double(), y[:15]), (x[15:].double(), y[15:])])
    vectors = torch.randn(op.dim, 3, dtype=torch.float64)
    hv = op.matmat(vectors)
    assert hv.device.type == device
    torch.testing.assert_close(hv.cpu(), full @ vectors, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_the_tracker_basis_round_trips_through_a_checkpoint_on_each_device(device, tmp_path):
    """A tracker restored from a checkpoint (basis saved on the CPU) measures as the one that went on."""
    model, x, y = tiny_mlp_batch()
    model = model.double().to(device)
    batch = (x.double().to(device), y.to(device))
    going_on, path = EigenTracker(k=2, tol=1e-6, seed=3), tmp_path / "checkpoint.pt"
    going_on.measure(model, mse_loss, batch)
    assert going_on.basis.device.type == device
    checkpoint.save(path, {"tracker": going_on.state_dict()})
    restored = EigenTracker()
    restored.load_state_dict(checkpoint.load(path)["tracker"])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)  # the next iterate
    a, b = going_on.measure(model, mse_loss, batch), restored.measure(model, mse_loss, batch)
    assert torch.equal(a.values, b.values) and a.hvps == b.hvps
    assert b.vectors.device.type == device
