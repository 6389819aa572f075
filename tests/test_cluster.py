"""Sweeps on a real two-node Ray cluster started on this machine: trials placed on both
nodes, data shipped through the object store to nodes without a data directory, a
data-parallel trial across the nodes, and a node killed mid-trial.

The cluster is two ``ray start --block`` processes, each the leader of its own process
group with its own temp dir and ports, so the tests stop exactly their own processes (never
``ray stop``, which would kill every Ray on the machine). Each sweep runs as an ``hpsearch``
subprocess joining the cluster with ``--address``, apart from the test session's local Ray.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from s3_server import free_port as _free_port
from sweep_process import REPO, SWEEP_TIMEOUT_S, Sweep

from hpsearch.scripts.experiment_folder import LEADERBOARD
from hpsearch.scripts.tune.callback import load_trials, rebuild_leaderboard

RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 90

# A small CNN with small batches, so a trial trains for ~10 s: the trial actor on the worker
# node starts a few seconds after the head's, and Tune hands a finished trial's actor to the
# next trial rather than wait for one still starting, so shorter trials can all end up on
# the head.
SPACE = {
    "experiment": "cluster",
    "data": {"name": "mnist", "val_size": 500, "batch_size": 20},
    "model": {"family": "cnn", "filters": [32, 32], "dense": [32]},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "search": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "objective": {"metric": "val_acc", "mode": "max"},
    # grace_period = max_epochs: ASHA stops nothing, so every trial must complete.
    "budget": {"num_samples": 4, "max_epochs": 8, "grace_period": 8},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
}
# Hex ids such as "1e088275" would otherwise be read as numbers.
ID_COLUMNS = {"trial_id": str, "node_id": str}


@dataclass
class RayNode:
    name: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    node_manager_port: int
    node_id: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} ({self.log}):\n" + "\n".join(lines[-n:])

    def pids(self) -> list[int]:
        """Every live process of this node. `ray start --block` leads a session holding
        them all: GCS, raylet, agents, and the workers the raylet spawned (which get process
        groups of their own, but stay in the session)."""
        out = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.getsid(int(entry.name)) == self.proc.pid:
                    out.append(int(entry.name))
            except OSError:  # exited meanwhile
                continue
        return out

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def stop(self, grace_s: float = 5.0) -> None:
        self.signal_all(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        self.signal_all(signal.SIGKILL)  # whatever ignored SIGTERM, and orphaned workers
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class LocalCluster:
    """A head and one worker node on this machine, each with 1 CPU, sharing an auth token
    (as a secured real cluster would: Ray 2.60 turns token auth on by default)."""

    root: Path
    # Every node's too, e.g. how to reach the S3 server a test started.
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    token_path: Path = field(init=False)
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(16))
        self.port = _free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
        env.update(self.extra_env)
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        # Nodes never read the datasets: trials get them through the object store.
        env["HPSEARCH_DATA_DIR"] = str(self.root / "no-data-here")
        return env

    def node_env(self) -> dict[str, str]:
        env = self._env()
        env["RAY_AUTH_MODE"] = "token"
        # Declare a killed node dead after ~10 s instead of Ray's ~30 s default.
        env["RAY_health_check_period_ms"] = "2000"
        env["RAY_health_check_failure_threshold"] = "5"
        return env

    def driver_env(self) -> dict[str, str]:
        """The sweep's environment: the token file but no RAY_AUTH_MODE, as for a user who
        never heard of token auth; ``hpsearch`` must send the token by itself."""
        return {**self._env(), "PYTHONUNBUFFERED": "1"}

    def _start(self, name: str, head: bool) -> RayNode:
        temp_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        log = self.root / f"{name}.log"
        nm_port = _free_port()
        cmd = [str(RAY), "start", "--block", "--num-cpus", "1", "--num-gpus", "0",
               "--node-ip-address", "127.0.0.1", "--node-manager-port", str(nm_port),
               "--temp-dir", str(temp_dir), "--object-store-memory", str(100 * 1024**2),
               "--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats"]
        if head:
            cmd += ["--head", "--port", str(self.port), "--include-dashboard", "false",
                    "--dashboard-port", str(_free_port())]
        else:
            cmd += ["--address", self.address]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, env=self.node_env(), stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = RayNode(name, proc, temp_dir, log, nm_port)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert node.alive(), f"ray start exited\n{node.log_tail()}"
            assert time.monotonic() < deadline, f"ray start timed out\n{node.log_tail()}"
            time.sleep(0.5)
        return node

    def start(self) -> None:
        self._start("head", head=True)
        self.add_worker()

    def add_worker(self) -> RayNode:
        node = self._start(f"worker{len(self.nodes)}", head=False)
        self._read_node_ids()
        return node

    @property
    def worker(self) -> RayNode:
        return self.nodes[-1]

    def ensure_worker(self) -> None:
        """A live second node (the node-loss test kills one)."""
        if len(self.nodes) < 2 or not self.worker.alive():
            self.add_worker()

    def _read_node_ids(self) -> None:
        """Ask the cluster for its alive nodes and match them to ours by node-manager port."""
        code = (
            "import json, sys, time, ray\n"
            "ray.init(address=sys.argv[1]); want = int(sys.argv[2])\n"
            "deadline = time.time() + 60\n"
            "while True:\n"
            "    alive = [n for n in ray.nodes() if n['Alive']]\n"
            "    if len(alive) >= want or time.time() > deadline: break\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps({n['NodeManagerPort']: n['NodeID'] for n in alive}))\n"
        )
        live = [n for n in self.nodes if n.alive()]
        proc = subprocess.run(
            [sys.executable, "-c", code, self.address, str(len(live))], cwd=REPO,
            env=self.node_env(), capture_output=True, text=True, timeout=START_TIMEOUT_S,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Ray may print a warning (lagging heartbeats under load) after the JSON line
        line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("{"))
        ids = {int(k): v for k, v in json.loads(line).items()}
        for node in live:
            assert node.node_manager_port in ids, (ids, self.logs())
            node.node_id = ids[node.node_manager_port]

    def logs(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture(scope="module")
def cluster(s3_server) -> Iterator[LocalCluster]:  # noqa: ANN001 - conftest's fixture
    # Short root: Ray's Unix socket paths under it must stay below ~107 characters.
    root = Path(tempfile.mkdtemp(prefix="hpc-", dir="/tmp"))
    c = LocalCluster(root, extra_env=s3_server.env())
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def _write_space(path: Path, **changes: object) -> Path:
    """SPACE with ``data``/``budget``/``resources`` entries updated, other sections replaced."""
    raw = json.loads(json.dumps(SPACE))
    for section, values in changes.items():
        merge = section in ("data", "budget", "resources")
        raw[section] = {**raw[section], **values} if merge else values
    path.write_text(yaml.safe_dump(raw))
    return path


def _data_copy(mnist_subset_dir: Path, tmp_path: Path) -> Path:
    """A copy of the MNIST subset that the test deletes once the driver has shipped it."""
    copy = tmp_path / "data"
    shutil.copytree(mnist_subset_dir, copy)
    return copy


def _results(exp_ray_dir: Path) -> list[list[dict]]:
    """Every trial's reported results, from Ray's experiment folder."""
    return [
        [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        for f in sorted(exp_ray_dir.glob("*/result.json"))
    ]


def _assert_continued_from_checkpoint(rows: list[dict], max_epochs: int) -> None:
    """A trial's results across a retry: the retry's first epoch follows the checkpoint the
    trial had reported last (its best epoch then), instead of starting again at 1."""
    epochs = [r["epoch"] for r in rows]
    assert epochs.count(1) == 1, f"the retry trained from epoch 1 again: {epochs}"
    restarts = [i for i in range(1, len(epochs)) if epochs[i] != epochs[i - 1] + 1]
    assert len(restarts) <= 1, epochs  # at most one retry boundary
    for i in restarts:  # none: the last report before the loss was the best epoch
        assert epochs[i] == rows[i - 1]["best_epoch"] + 1, (epochs, rows[i - 1]["best_epoch"])
    assert epochs[-1] == max_epochs, epochs


def _wait_for_epochs(sweep: Sweep, exp_ray_dir: Path, n: int, timeout: float) -> None:
    """Until some trial of the sweep has reported ``n`` epochs to Tune."""
    deadline = time.monotonic() + timeout
    while not any(len(trial) >= n for trial in _results(exp_ray_dir)):
        assert sweep.proc.poll() is None, f"sweep exited early:\n{sweep.output}"
        assert time.monotonic() < deadline, f"no trial reached epoch {n}:\n{sweep.output}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one LocalCluster at a time
def test_sweep_runs_trials_on_both_nodes_with_shipped_data(
    cluster: LocalCluster, mnist_subset_dir: Path, tmp_path: Path
):
    cluster.ensure_worker()
    space = _write_space(tmp_path / "space.yaml", experiment="two_nodes")
    data = _data_copy(mnist_subset_dir, tmp_path)
    # One path on every node, as NFS would be; given as a URI, as s3://… would be.
    storage = tmp_path / "shared-storage"
    sweep = Sweep([str(space), "--address", cluster.address, "--data-dir", str(data),
                   "--results-dir", str(tmp_path / "results"), "--storage", storage.as_uri()],
                  cluster.driver_env())
    try:
        # Trials start only after this line: with the files gone, a trial can only train
        # on the tensors the driver shipped.
        sweep.wait_for_line("Data:", timeout=120)
        shutil.rmtree(data)
        rc = sweep.wait()
    finally:
        sweep.kill()
    assert rc == 0, f"{sweep.output}\n{cluster.logs()}"
    assert "Ray: 2 node(s), 2 CPUs" in sweep.output

    exp_dir = tmp_path / "results" / "two_nodes"
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype=ID_COLUMNS)
    assert len(board) == 4 and set(board.status) == {"completed"}, board.to_string()
    per_node = board.groupby("node_id").size().to_dict()
    assert set(per_node) == {cluster.head.node_id, cluster.worker.node_id}, per_node
    assert board.device.eq("cpu").all()
    meta = json.loads((exp_dir / "sweep.json").read_text())
    # Ray's experiment lives in --storage; the leaderboard and metadata stay in results/.
    assert meta["storage"] == storage.as_uri()
    ray_dir = storage / "two_nodes" / "ray"
    assert not (exp_dir / "ray").exists() and ray_dir.is_dir()
    assert all(Path(exp_dir, c, "model.ckpt").is_file() for c in board.checkpoint)
    results = _results(ray_dir)
    assert len(results) == 4
    assert {r["data"] for trial in results for r in trial} == {"object-store"}
    # `hpsearch leaderboard --rebuild` finds the experiment in the storage too.
    rebuilt = pd.read_csv(rebuild_leaderboard(exp_dir), dtype=ID_COLUMNS)
    key = ["trial_id", "status", "val_acc", "node_id"]
    pd.testing.assert_frame_equal(rebuilt[key], board[key])
    figures = {"trials_per_node": {("head" if k == cluster.head.node_id else "worker"): v
                                   for k, v in per_node.items()},
               "wall_time_s": round(meta["wall_time_s"], 1)}
    print(f"two-node sweep: {json.dumps(figures)}")


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one LocalCluster at a time
def test_a_two_node_sweep_in_s3_is_killed_and_resumed(
    cluster: LocalCluster, s3_server, mnist_subset_dir: Path, tmp_path: Path  # noqa: ANN001
):
    cluster.ensure_worker()
    bucket = s3_server.make_bucket("cluster-sweeps")
    space = _write_space(tmp_path / "space.yaml", experiment="s3_nodes",
                         model={"family": "mlp", "hidden": [32]}, data={"batch_size": 50},
                         budget={"num_samples": 4, "max_epochs": 3, "grace_period": 3})
    exp_dir = tmp_path / "results" / "s3_nodes"
    args = [str(space), "--address", cluster.address, "--data-dir", str(mnist_subset_dir),
            "--results-dir", str(tmp_path / "results"), "--storage", f"s3://{bucket}/hp"]
    env = {**cluster.driver_env(), **s3_server.env()}
    sweep = Sweep(args, env)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while not ((exp_dir / LEADERBOARD).is_file() and (pd.read_csv(
            exp_dir / LEADERBOARD).status == "completed").sum() >= 1):
        assert sweep.proc.poll() is None and time.monotonic() < deadline, sweep.output
        time.sleep(0.05)
    sweep.kill()
    resumed = Sweep([*args, "--resume"], env)
    assert resumed.wait() == 0, cluster.logs()
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype=ID_COLUMNS)
    assert len(board) == 4 and set(board.status) == {"completed"}, board.to_string()
    import pyarrow.fs

    fs = pyarrow.fs.S3FileSystem(endpoint_override=s3_server.endpoint, access_key="testing",
                                 secret_key="testing", region="us-east-1")
    for checkpoint in board.checkpoint:
        info = fs.get_file_info(f"{checkpoint}/model.ckpt")
        assert info.type == pyarrow.fs.FileType.File and info.size > 0, checkpoint
    assert not (exp_dir / "ray").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one LocalCluster at a time
def test_data_parallel_trial_spans_both_nodes(
    cluster: LocalCluster, mnist_subset_dir: Path, tmp_path: Path
):
    cluster.ensure_worker()
    # Starting the Train run dominates here: an MLP keeps the training itself short.
    space = _write_space(tmp_path / "space.yaml", experiment="ddp",
                         model={"family": "mlp", "hidden": [32]},
                         data={"batch_size": 50},
                         budget={"num_samples": 1, "max_epochs": 2, "grace_period": 2},
                         resources={"max_concurrent": 1})
    sweep = Sweep([str(space), "--address", cluster.address, "--data-dir",
                   str(mnist_subset_dir), "--results-dir", str(tmp_path / "results"),
                   "--workers-per-trial", "2"], cluster.driver_env())
    rc = sweep.wait()
    assert rc == 0, f"{sweep.output}\n{cluster.logs()}"
    assert "per trial 2 workers x (1 CPU)" in sweep.output

    exp_dir = tmp_path / "results" / "ddp"
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype=ID_COLUMNS)
    assert len(board) == 1 and board.status[0] == "completed", board.to_string()
    assert board.val_acc[0] > 0.3
    # 2 workers x 1 CPU on two 1-CPU nodes: one worker on each, one gloo process group.
    assert set(board.node_id[0].split(",")) == {cluster.head.node_id, cluster.worker.node_id}
    assert Path(exp_dir, board.checkpoint[0], "model.ckpt").is_file()
    (results,) = _results(exp_dir / "ray")
    # One result per epoch reached Tune (rank 0's), not one per worker.
    assert [r["epoch"] for r in results] == [1, 2]
    assert {r["workers"] for r in results} == {2}


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one LocalCluster at a time
def test_node_loss_retries_the_trial_and_loses_nothing(
    cluster: LocalCluster, mnist_subset_dir: Path, tmp_path: Path
):
    cluster.ensure_worker()
    worker = cluster.worker
    # One trial per node; the worker's is killed and must be retried on the head.
    space = _write_space(tmp_path / "space.yaml", experiment="node_loss",
                         budget={"num_samples": 2})
    sweep = Sweep([str(space), "--address", cluster.address, "--data-dir",
                   str(mnist_subset_dir), "--results-dir", str(tmp_path / "results"),
                   "--max-failures", "2"], cluster.driver_env())
    try:
        deadline = time.monotonic() + 180
        # A trial on the worker node has reported its first epoch (and checkpoint): it is
        # mid-run there, 7 epochs from its end.
        while not any(r.get("node_id") == worker.node_id
                      for trial in _results(tmp_path / "results" / "node_loss" / "ray")
                      for r in trial):
            assert sweep.proc.poll() is None, f"sweep exited early:\n{sweep.output}"
            assert time.monotonic() < deadline, f"no trial on the worker:\n{sweep.output}"
            time.sleep(0.2)
        worker.signal_all(signal.SIGKILL)
        worker.proc.wait(timeout=30)
        rc = sweep.wait()
    finally:
        sweep.kill()
    assert rc == 0, f"{sweep.output}\n{cluster.logs()}"

    exp_dir = tmp_path / "results" / "node_loss"
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype=ID_COLUMNS)
    assert len(board) == 2 and board.trial_id.is_unique, board.to_string()
    assert set(board.status) == {"completed"}, board.to_string()
    assert board.error.isna().all()
    failures = {t.trial_id: t.run_metadata.num_failures for t in load_trials(exp_dir)}
    retried = [tid for tid, n in failures.items() if n >= 1]
    assert len(retried) == 1, failures
    # The retried trial finished on the surviving head node.
    assert board.set_index("trial_id").node_id[retried[0]] == cluster.head.node_id
    (rows,) = [t for t in _results(exp_dir / "ray") if t[0]["trial_id"] == retried[0]]
    _assert_continued_from_checkpoint(rows, SPACE["budget"]["max_epochs"])


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one LocalCluster at a time
def test_node_loss_resumes_a_data_parallel_trial_from_its_checkpoint(
    cluster: LocalCluster, mnist_subset_dir: Path, tmp_path: Path
):
    cluster.ensure_worker()
    # One worker on each node; the worker node is killed once the trial has reported
    # (and checkpointed) two epochs, and a fresh node joins so that the retry has 2 CPUs.
    max_epochs = 8
    space = _write_space(tmp_path / "space.yaml", experiment="ddp_loss",
                         budget={"num_samples": 1, "max_epochs": max_epochs,
                                 "grace_period": max_epochs},
                         resources={"max_concurrent": 1})
    exp_dir = tmp_path / "results" / "ddp_loss"
    sweep = Sweep([str(space), "--address", cluster.address, "--data-dir",
                   str(mnist_subset_dir), "--results-dir", str(tmp_path / "results"),
                   "--workers-per-trial", "2", "--max-failures", "2"], cluster.driver_env())
    try:
        _wait_for_epochs(sweep, exp_dir / "ray", 2, timeout=240)
        cluster.worker.signal_all(signal.SIGKILL)
        cluster.worker.proc.wait(timeout=30)
        cluster.add_worker()
        rc = sweep.wait()
    finally:
        sweep.kill()
    assert rc == 0, f"{sweep.output}\n{cluster.logs()}"
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype=ID_COLUMNS)
    assert len(board) == 1 and board.status[0] == "completed", board.to_string()
    failures = [t.run_metadata.num_failures for t in load_trials(exp_dir)]
    assert failures == [1], failures
    (rows,) = _results(exp_dir / "ray")
    _assert_continued_from_checkpoint(rows, max_epochs)
    print(f"data-parallel node loss: epochs reported {[r['epoch'] for r in rows]}")


# ---------------------------------------------------------------------------------------
# The shipped cluster files and the small pieces, without a cluster
# ---------------------------------------------------------------------------------------

CLUSTER_DIR = REPO / "scripts" / "cluster"


def test_launcher_config_passes_ray_up_validation():
    """What `ray up` checks before it calls the cloud: Ray's config schema, with defaults
    filled in as `ray up` does. (Creating the AWS nodes is not tested here.)"""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER_DIR / "aws-gpu.yaml").read_text())
    config = prepare_config(json.loads(json.dumps(raw)))
    validate_config(config)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert {"gpu_1x", "gpu_4x"} <= set(types)
    assert config["file_mounts"] == {"/home/ray/hpsearch": "."}
    # The validation is real: a misspelt key is rejected.
    with pytest.raises(jsonschema.ValidationError):
        validate_config({**config, "max_worker": 3})
    help_text = subprocess.run([str(RAY), "up", "--help"], capture_output=True, text=True,
                               timeout=60)
    assert help_text.returncode == 0 and "CLUSTER_CONFIG_FILE" in help_text.stdout


def test_rayjob_runs_a_valid_sweep_command(tmp_path: Path):
    import shlex

    from hpsearch.scripts.cli import build_parser
    from hpsearch.search_spaces.schema import load_space

    job = yaml.safe_load((CLUSTER_DIR / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster_spec = spec["rayClusterSpec"]
    head = cluster_spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (worker,) = cluster_spec["workerGroupSpecs"]
    gpus = worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["hpsearch", "sweep"]
    # --data-dir must exist where the command is parsed; /data exists in the head pod only.
    argv[argv.index("--data-dir") + 1] = str(tmp_path)
    args = build_parser().parse_args(argv[1:])
    assert args.address == "auto" and args.storage.startswith("s3://")
    # The space file is the repository's, at the image's path.
    space = load_space(REPO / Path(args.space).relative_to("/home/ray/hpsearch"))
    assert space.resources.workers_per_trial * space.resources.gpus_per_trial == int(gpus)
    assert cluster_spec["rayVersion"] == __import__("ray").__version__
    head_mounts = {m["mountPath"] for m in head["template"]["spec"]["containers"][0]
                   ["volumeMounts"]}
    assert {"/data", str(args.results_dir)} <= head_mounts


def test_storage_and_concurrency_helpers():
    from hpsearch.scripts.tune.cluster import check_placement, default_max_concurrent
    from hpsearch.scripts.tune.options import storage_uri
    from hpsearch.search_spaces.errors import ConfigError
    from hpsearch.search_spaces.schema import parse_space

    assert storage_uri(None) is None
    assert storage_uri("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert storage_uri("relative/dir") == str(Path("relative/dir").resolve())
    space = parse_space({**SPACE, "resources": {"cpus_per_trial": 2, "gpus_per_trial": 1,
                                                "workers_per_trial": 2}})
    assert default_max_concurrent(space, {"cpus": 64, "gpus": 8}) == 4  # GPUs limit
    assert default_max_concurrent(space, {"cpus": 6, "gpus": 8}) == 1  # CPUs limit
    assert default_max_concurrent(parse_space(SPACE), {"cpus": 2, "gpus": 0}) is None
    shared_gpu = parse_space({**SPACE, "resources": {"gpus_per_trial": 0.5,
                                                     "workers_per_trial": 2}})
    with pytest.raises(ConfigError, match="whole GPUs"):
        check_placement(shared_gpu)
    check_placement(space)


def test_ray_client_address_without_ray_client_is_one_line_error(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("Ray Client is installed here")
    from hpsearch.scripts.tune.cluster import connect
    from hpsearch.search_spaces.errors import ConfigError

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # leave this process's auth mode alone
    with pytest.raises(ConfigError, match=r"ray\[client\].*ray job submit"):
        connect("ray://127.0.0.1:10001")
