"""Deployed latency in the background (ui/deploy_jobs.py, ui/deployed_view.py): one shared job per configuration,
the newest first, bounded; a page shows the core numbers at once, the deployed ones when ready, and survives a
slow or failing deployment."""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import compressor as cz
import ui.cache
from compressor.deploy import deploy as real_deploy
from ui import deploy_jobs
from ui.deploy_jobs import DeployQueue

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 60


def wait_for(queue: DeployQueue, key, states=("ready", "failed")) -> deploy_jobs.Status:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = queue.status(key)
        if status is not None and status.state in states:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{key} never reached {states}")


def test_one_job_per_configuration_shared_by_every_asker():
    queue, calls, gate = DeployQueue(), [], threading.Event()

    def job():
        calls.append(1)
        gate.wait(WAIT_S)
        return "measured"

    first = queue.request(("m", "r"), lambda: job)
    second = queue.request(("m", "r"), lambda: job)
    assert first.pending and second.pending
    gate.set()
    assert wait_for(queue, ("m", "r")).deployment == "measured"
    assert queue.request(("m", "r"), lambda: job).deployment == "measured"
    assert len(calls) == 1


def test_a_job_is_built_only_when_it_must_be_queued():
    """The asker's job factory (which resolves models) is not called for a deployment that is ready, failed or
    running: the status check lives in `request` alone."""
    queue, built, gate = DeployQueue(), [], threading.Event()

    def make(result):
        built.append(result)
        return lambda: gate.wait(WAIT_S) and result

    queue.request(("m", "r"), lambda: make("first"))
    wait_for(queue, ("m", "r"), ("running",))
    assert queue.request(("m", "r"), lambda: make("again")).state == "running"
    gate.set()
    assert wait_for(queue, ("m", "r")).deployment == "first"
    assert queue.request(("m", "r"), lambda: make("again")).deployment == "first"
    assert built == ["first"]


def test_newest_request_runs_first_and_the_queue_is_bounded():
    queue, order, gate = DeployQueue(max_pending=2), [], threading.Event()

    def job(name):
        def run():
            if name == "blocker":
                gate.wait(WAIT_S)
            order.append(name)
            return name
        return run

    queue.request(("m", "blocker"), lambda: job("blocker"))
    wait_for(queue, ("m", "blocker"), ("running",))
    for name in ("a", "b", "c"):  # three wait behind the blocker; only two may: "a", the oldest, is dropped
        queue.request(("m", name), lambda: job(name))
    assert queue.status(("m", "a")) is None
    assert queue.status(("m", "b")).waiting == 1 and queue.status(("m", "c")).waiting == 0
    gate.set()
    wait_for(queue, ("m", "b"))
    assert order == ["blocker", "c", "b"]


def test_a_failing_job_is_one_line_and_the_queue_goes_on():
    queue = DeployQueue()

    def broken():
        raise RuntimeError("export failed\nwith a long trace")

    queue.request(("m", "bad"), lambda: broken)
    failed = wait_for(queue, ("m", "bad"))
    assert failed.state == "failed" and failed.error == "RuntimeError: export failed"
    queue.request(("m", "good"), lambda: lambda: "ok")
    assert wait_for(queue, ("m", "good")).deployment == "ok"


def test_results_are_bounded_least_recently_used_first():
    queue = DeployQueue(max_results=2)
    for name in ("a", "b"):
        queue.measure(("m", name), lambda: name)
    queue.status(("m", "a"))  # used: "b" is now the least recently used
    queue.measure(("m", "c"), lambda: "c")
    assert queue.status(("m", "b")) is None
    assert queue.status(("m", "a")).deployment == "a" and queue.status(("m", "c")).deployment == "c"


# ---------------------------------------------------------------- the child process


class ProcessId:
    """A job that says which process ran it (module level, so it pickles by reference)."""

    def __call__(self) -> int:
        return os.getpid()


class Sleep:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self) -> int:
        time.sleep(self.seconds)
        return os.getpid()


@pytest.fixture
def child():
    found = deploy_jobs.Child()
    yield found
    for pid in found.pids():
        os.kill(pid, signal.SIGKILL)
    found.close()


def test_a_job_runs_in_a_child_process_and_the_child_is_reused(child):
    first, second = child(ProcessId()), child(ProcessId())
    assert first != os.getpid() and first == second and child.pids() == [first]


def test_a_job_that_cannot_be_pickled_runs_in_the_calling_thread(child):
    lock = threading.Lock()
    assert child(lambda: (lock, os.getpid())[1]) == os.getpid() and child.pids() == []


def test_a_closed_child_exits_and_the_next_job_starts_another(child):
    first = child(ProcessId())
    child.close()
    deadline = time.monotonic() + WAIT_S
    while Path(f"/proc/{first}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{first}").exists() or "Z" in Path(f"/proc/{first}/stat").read_text().split()[2]
    assert child(ProcessId()) not in (first, os.getpid())


def test_an_idle_queue_closes_its_child(monkeypatch):
    closed = threading.Event()

    class Runner:
        def __call__(self, job):
            return job()

        def close(self):
            closed.set()

    monkeypatch.setattr(deploy_jobs, "CHILD_IDLE_S", 0.2)
    queue = DeployQueue(runner=Runner())
    queue.request(("m", "r"), lambda: lambda: "measured")
    assert wait_for(queue, ("m", "r")).deployment == "measured"
    assert closed.wait(WAIT_S)


def test_a_killed_child_is_one_line_and_the_next_job_gets_a_new_child(child):
    first = child(ProcessId())
    result = []
    runner = threading.Thread(target=lambda: result.append(_outcome(child, Sleep(30))))
    runner.start()
    time.sleep(1.0)  # the job has reached the child
    os.kill(first, signal.SIGKILL)
    runner.join(WAIT_S)
    (error,) = result
    assert isinstance(error, RuntimeError) and "deployment process stopped" in str(error)
    again = child(ProcessId())
    assert again not in (first, os.getpid())


def _outcome(child, job):
    try:
        return child(job)
    except RuntimeError as err:
        return err


@pytest.mark.parametrize("shipped", [None, "digits-mlp"], ids=["sent whole", "sample sent by name"])
def test_a_deployment_in_the_child_equals_one_in_this_process(child, shipped):
    sample = cz.load_sample("digits-mlp")
    model = cz.compress(sample.model, [cz.Quantize(bits=8, scheme="symmetric", granularity="channel")], sample.data)
    job = deploy_jobs.Deploy(model, sample.data, sample.model, simulated_accuracy=None, reference=None, sample=shipped)
    there, here = child(job), job()
    assert child.pids() and there.kernel == here.kernel and there.op_types == here.op_types
    assert there.deployed_accuracy == here.deployed_accuracy and there.deployed_bytes == here.deployed_bytes
    assert there.deployed_latency_ms > 0 and there.deployed_baseline_latency_ms > 0


def test_a_shipped_samples_baseline_and_data_travel_as_its_name():
    sample = cz.load_sample("digits-mlp")
    model = cz.compress(sample.model, [cz.Prune(amount=0.5)], sample.data)
    whole = deploy_jobs.Deploy(model, sample.data, sample.model, simulated_accuracy=0.9, reference=None)
    named = dataclasses.replace(whole, sample="digits-mlp")
    sent = pickle.dumps(named, protocol=pickle.HIGHEST_PROTOCOL)
    baseline_bytes = sum(p.numel() * p.element_size() for p in sample.model.parameters())
    assert len(pickle.dumps(whole, protocol=pickle.HIGHEST_PROTOCOL)) - len(sent) > baseline_bytes  # not sent
    there = pickle.loads(sent)  # as the child rebuilds it: the sample loaded from the repository's files
    assert there.baseline is not sample.model and there.sample == "digits-mlp" and there.simulated_accuracy == 0.9
    for mine, theirs in zip(sample.model.state_dict().values(), there.baseline.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)
    assert torch.equal(there.data.test.X, sample.data.test.X) and torch.equal(there.data.test.y, sample.data.test.y)
    assert torch.equal(there.model.state_dict()["fc1.weight"], model.state_dict()["fc1.weight"])  # sent as it is


# ---------------------------------------------------------------- on the Pruning page (AppTest)


@pytest.fixture
def held_deploy(monkeypatch):
    """ui.cache's deploy, held in the background worker until the test lets it go (or made to fail there); the
    baseline, which pages deploy in their own script, is not held."""
    deploy_jobs.jobs.clear()
    gate, failure = threading.Event(), []

    def deploy(*args, **kwargs):
        if threading.current_thread().name == "deploy-jobs":
            gate.wait(WAIT_S)
            if failure:
                raise failure[0]
        return real_deploy(*args, **kwargs)

    monkeypatch.setattr(deploy_jobs, "deploy", deploy)
    monkeypatch.setattr(deploy_jobs.jobs, "runner", deploy_jobs.run_here)  # held in this process's worker thread
    yield gate, failure
    gate.set()
    deploy_jobs.jobs.clear()


def open_pruning(amount: float) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/1_Pruning.py"), default_timeout=60)
    at.session_state["model_name"] = "digits-mlp"
    at.session_state["prune_amount"] = amount
    return at.run()


def key_of(amount: float) -> tuple[str, str]:
    return "digits-mlp", ui.cache.recipe_key(cz.Recipe((cz.Prune(amount=amount),)))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_core_numbers_at_once_deployed_latency_once_ready(held_deploy):
    gate, _ = held_deploy
    started = time.monotonic()
    at = open_pruning(0.35)  # the baseline deploys now (Overview's number); this configuration in the background
    assert not at.exception
    shown = metrics(at)
    assert "Latency" in shown and "Latency (deployed)" not in shown  # eager PyTorch's, measured
    assert shown["Accuracy"] and shown["Size (exported file)"]
    assert any("Measuring the deployed latency" in c.value for c in at.caption)
    assert deploy_jobs.jobs.status(key_of(0.35)).pending
    gate.set()
    ready = wait_for(deploy_jobs.jobs, key_of(0.35))
    assert ready.state == "ready", ready.error
    at.run()  # what the polling fragment's st.rerun() does
    assert not at.exception
    shown = metrics(at)
    assert shown["Latency (deployed)"] == f"{ready.deployment.deployed_latency_ms:.3f} ms"
    assert not any("Measuring the deployed latency" in c.value for c in at.caption)
    point = at.session_state["tradeoff_points"][key_of(0.35)]
    assert point["deployed_latency_ms"] == ready.deployment.deployed_latency_ms  # the Trade-offs point got it too
    assert time.monotonic() - started < WAIT_S


def test_a_failed_deployment_is_one_warning_and_the_page_still_works(held_deploy):
    gate, failure = held_deploy
    failure.append(RuntimeError("ONNX export refused this graph"))
    at = open_pruning(0.45)
    gate.set()
    assert wait_for(deploy_jobs.jobs, key_of(0.45)).state == "failed"
    at.run()
    assert not at.exception
    assert "Latency" in metrics(at) and metrics(at)["Accuracy"]
    (warning,) = [w.value for w in at.warning if "could not be measured" in w.value]
    assert "RuntimeError: ONNX export refused this graph" in warning
    at.select_slider(key="prune_amount").set_value(0.55).run()  # the page goes on: another stop, another job
    assert not at.exception and deploy_jobs.jobs.status(key_of(0.55)) is not None
