"""Device selection, clusters and the `tf.distribute` strategy of both stages (a port addition).

The original ran on one GPU (`GPU_ID`). Here a run uses every visible GPU with
`tf.distribute.MirroredStrategy` (data parallel: each replica takes an equal slice of the global
batch, gradients are summed over replicas), or the default strategy on a single device; and, when
a cluster is named (`TF_CONFIG`, `--cluster HOST:PORT,... --task-index I`, or `--cluster slurm`),
`tf.distribute.MultiWorkerMirroredStrategy` over the GPUs (or the CPU) of every worker. Models and
optimisers must be created inside `strategy.scope()`.

TensorFlow is imported inside the functions: this module is imported before TensorFlow starts
(`select_gpus` has to run before it does, and the cluster is checked before its start-up).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from misc.errors import ConfigError

# How long a worker waits for the others of its cluster to start, by default (`--cluster-timeout`).
CLUSTER_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker run.

    Attributes:
      source: where the cluster comes from: "TF_CONFIG", "--cluster" or "slurm".
      workers: the worker addresses (empty for Slurm until `resolver` reads the job).
      task_index: this worker's index among them (0 is the chief, which writes the run folder).
      timeout: seconds to wait for every worker to start.
    """

    source: str
    workers: tuple[str, ...]
    task_index: int
    timeout: float = CLUSTER_TIMEOUT_S

    @property
    def is_chief(self) -> bool:
        """Whether this worker writes the run folder (task 0)."""
        return self.task_index == 0

    def resolver(self):
        """TensorFlow's cluster resolver for it: `TFConfigClusterResolver`, `SlurmClusterResolver` or
        `SimpleClusterResolver` (no hand-written cluster parsing reaches TensorFlow)."""
        import tensorflow as tf  # this module is imported before TensorFlow starts (see the module docstring)

        resolvers = tf.distribute.cluster_resolver
        if self.source == "TF_CONFIG":
            return resolvers.TFConfigClusterResolver()
        if self.source == "slurm":
            try:
                return resolvers.SlurmClusterResolver(port_base=int(os.environ.get("STACKGAN_SLURM_PORT", "8888")))
            except (RuntimeError, OSError, ValueError) as err:  # e.g. no nvidia-smi, a Slurm variable missing
                raise ConfigError(f"--cluster slurm: TensorFlow's SlurmClusterResolver cannot read this job step "
                                  f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})"
                                  ) from None
        return resolvers.SimpleClusterResolver(tf.train.ClusterSpec({"worker": list(self.workers)}),
                                               task_type="worker", task_id=self.task_index, rpc_layer="grpc")


def _addresses_ok(workers: Sequence[str]) -> bool:
    """Whether every address is HOST:PORT with a numeric port."""
    return bool(workers) and all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in workers)


def _tf_config_cluster(text: str, timeout: float) -> Cluster | None:
    """The cluster `TF_CONFIG` names (checked here, parsed by TensorFlow's resolver); None without one."""
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({err})") from None
    if not isinstance(config, dict) or not config.get("cluster"):
        return None
    cluster = config["cluster"]
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise ConfigError('TF_CONFIG: "cluster" must map job names to lists of HOST:PORT addresses')
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief") or \
            not isinstance(task.get("index"), int):
        raise ConfigError('TF_CONFIG: names no task of this process, e.g. "task": {"type": "worker", "index": 0}')
    workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
    if not _addresses_ok(workers):
        raise ConfigError(f"TF_CONFIG: expected HOST:PORT addresses for the chief and workers, got {list(workers)}")
    index = task["index"] + (len(cluster.get("chief", [])) if task["type"] == "worker" else 0)
    if not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG: task {task['type']} {task['index']} is not in the cluster {list(workers)}")
    return Cluster("TF_CONFIG", workers, index, timeout)


def resolve_cluster(cluster: str | None = None, task_index: int | None = None,
                    timeout: float = CLUSTER_TIMEOUT_S) -> Cluster | None:
    """The cluster of a run from the command line or the environment, or None for one machine.

    Checked before TensorFlow starts, so a mistake is reported at once.

    Args:
      cluster: `--cluster`: comma-separated HOST:PORT of every worker, the same on all of them (with
        `task_index`), or "slurm" (TensorFlow's `SlurmClusterResolver` reads the job step's
        variables; `STACKGAN_SLURM_PORT` sets its first port, default 8888); None: `TF_CONFIG` if it
        names a cluster.
      task_index: `--task-index`, this worker's place in `cluster`.
      timeout: seconds to wait for every worker to start (`--cluster-timeout`).

    Raises:
      ConfigError: an invalid `TF_CONFIG`, a cluster without this worker's index, both a `--cluster`
        and a `TF_CONFIG`, or `--cluster slurm` outside a Slurm job step.
    """
    if timeout <= 0:
        raise ConfigError(f"--cluster-timeout must be positive, got {timeout}")
    if cluster is None:
        if task_index is not None:
            raise ConfigError("--task-index: give the cluster too, with --cluster HOST:PORT,HOST:PORT")
        text = os.environ.get("TF_CONFIG", "").strip()
        return _tf_config_cluster(text, timeout) if text else None
    if os.environ.get("TF_CONFIG", "").strip():
        raise ConfigError("--cluster: TF_CONFIG is set as well; give the cluster one way only")
    if cluster == "slurm":
        if "SLURM_PROCID" not in os.environ or "SLURM_STEP_NODELIST" not in os.environ:
            raise ConfigError("--cluster slurm: not inside a Slurm job step (no SLURM_PROCID); start the workers "
                              "with srun")
        return Cluster("slurm", (), int(os.environ["SLURM_PROCID"]), timeout)
    workers = tuple(address.strip() for address in cluster.split(",") if address.strip())
    if not _addresses_ok(workers):
        raise ConfigError(f"--cluster {cluster}: expected HOST:PORT,HOST:PORT,... (or slurm)")
    if task_index is None or not 0 <= task_index < len(workers):
        raise ConfigError(f"--task-index: give this worker's place in --cluster, 0 to {len(workers) - 1}")
    return Cluster("--cluster", workers, task_index, timeout)


def rendezvous(cluster: Cluster, workers: Sequence[str]) -> None:
    """Wait until every worker of the cluster has started, or give up after `cluster.timeout`.

    `MultiWorkerMirroredStrategy` waits for the other workers without a time limit, inside a call
    that no Python timer can interrupt. So before it starts, each worker listens on its own port
    (which TensorFlow's server takes right after) and connects to every other worker's: once it has
    reached all of them and all of them have reached it, every worker is up. A connecting worker
    closes first, so the listening port is free again at once.

    Raises:
      ConfigError: the others did not answer within the time limit (one line, nothing written).
    """
    others = {k: address for k, address in enumerate(workers) if k != cluster.task_index}
    port = int(workers[cluster.task_index].rpartition(":")[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as err:
        listener.close()
        raise ConfigError(f"worker {cluster.task_index} ({cluster.source}): cannot listen on port {port} of this "
                          f"machine ({err.strerror}); is another run using it?") from None
    listener.listen(len(workers))
    listener.settimeout(0.2)
    reached, heard = set(), set()
    deadline = time.monotonic() + cluster.timeout
    try:
        while len(reached) < len(others) or len(heard) < len(others):
            if time.monotonic() > deadline:
                missing = ", ".join(others[k] for k in sorted(set(others) - (reached & heard)))
                raise ConfigError(f"worker {cluster.task_index} ({cluster.source}) could not reach the other workers "
                                  f"({missing}) within {cluster.timeout:.0f} s; start every worker with the same "
                                  "cluster, or raise --cluster-timeout")
            for k in sorted(set(others) - reached):
                host, _, peer_port = others[k].rpartition(":")
                try:
                    with socket.create_connection((host, int(peer_port)), timeout=0.5) as peer:
                        peer.sendall(f"{cluster.task_index}\n".encode())
                    reached.add(k)
                except OSError:
                    pass
            try:
                connection, _ = listener.accept()
            except (socket.timeout, BlockingIOError):
                continue
            with connection:
                connection.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := connection.recv(16):  # until the other side closes
                        data += chunk
                if data.strip().isdigit():
                    heard.add(int(data.strip()))
    finally:
        listener.close()


def parse_gpu_list(spec: str) -> list[int]:
    """Parse a `--gpu` value such as "0,2" into GPU indices.

    Args:
      spec: comma-separated non-negative integers; "" or "-1" means no GPU (CPU only).

    Returns:
      The indices, in the given order, without duplicates.

    Raises:
      ConfigError: the value is not a comma-separated list of non-negative integers.
    """
    spec = spec.strip()
    if spec in ("", "-1"):
        return []
    indices: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"--gpu {spec}: expected comma-separated GPU indices such as 0,1 (or -1 for CPU only)")
        if int(part) not in indices:
            indices.append(int(part))
    return indices


def select_gpus(indices: Sequence[int] | None) -> None:
    """Make only the GPUs `indices` visible to TensorFlow (None: leave all visible).

    Must run before TensorFlow initialises its devices: before it is imported, this sets
    `CUDA_VISIBLE_DEVICES`; afterwards it falls back to `tf.config.set_visible_devices`.

    Raises:
      ConfigError: an index names a GPU that does not exist.
    """
    if indices is None:
        return
    if "tensorflow" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in indices)
        return
    import tensorflow as tf  # already started (see the module docstring)

    gpus = tf.config.list_physical_devices("GPU")
    missing = [i for i in indices if i >= len(gpus)]
    if missing:
        raise ConfigError(f"--gpu: GPU {missing[0]} does not exist ({len(gpus)} visible)")
    tf.config.set_visible_devices([gpus[i] for i in indices], "GPU")


def get_strategy(devices: Sequence[str] | None = None, expected_gpus: int | None = None,
                 cluster: Cluster | None = None):
    """The strategy to build and train under.

    Args:
      devices: explicit device names for `MirroredStrategy` (tests use two logical CPUs); None
        picks every visible GPU.
      expected_gpus: how many GPUs `--gpu` asked for; None accepts whatever is visible.
      cluster: the workers of a multi-worker run (`resolve_cluster`); it must come first, before
        any other TensorFlow operation of the process.

    Returns:
      `tf.distribute.MultiWorkerMirroredStrategy` over the cluster; else `MirroredStrategy` over
      `devices`, or over all GPUs when more than one is visible; otherwise the default
      (single-device) strategy.

    Raises:
      ConfigError: fewer GPUs are visible than `--gpu` asked for.
    """
    import tensorflow as tf  # this module is imported before TensorFlow starts (see the module docstring)

    if cluster is not None:
        resolver = cluster.resolver()
        spec = resolver.cluster_spec()
        rendezvous(cluster, [*spec.job_tasks("chief"), *spec.job_tasks("worker")] if "chief" in spec.jobs
                   else spec.job_tasks("worker"))
        # No `CommunicationOptions(timeout_seconds=...)`: with a timeout, every collective op starts a
        # thread that outlives it (TF 2.21: about 300 threads a second in a shapes Stage-I run, until
        # thread creation fails). A stopped peer is reported by gRPC and the coordination service instead.
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if devices is not None:
        return tf.distribute.MirroredStrategy(list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if expected_gpus is not None and len(gpus) != expected_gpus:
        raise ConfigError(f"--gpu: {expected_gpus} GPU(s) requested but TensorFlow sees {len(gpus)}")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def use_sync_bn(requested: bool, strategy) -> bool:
    """Whether the networks should synchronise batch-norm statistics (`TRAIN.SYNC_BN`).

    Only meaningful with several replicas; on one device plain BN computes the same statistics
    with Keras' faster fused path, so it is used there.
    """
    return bool(requested) and strategy.num_replicas_in_sync > 1


def check_batch_size(batch_size: int, strategy, source: str = "TRAIN.BATCH_SIZE") -> int:
    """Check that the global batch splits evenly over the replicas.

    Args:
      batch_size: the global batch (`TRAIN.BATCH_SIZE`).
      strategy: the strategy in use.
      source: what to name in the error message.

    Returns:
      The per-replica batch size.

    Raises:
      ConfigError: the batch does not divide by the number of replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"{source}: the batch size {batch_size} does not divide by the {replicas} replicas "
                          f"(GPUs, or workers) in use; choose a multiple of {replicas}, fewer GPUs with --gpu "
                          "or fewer workers")
    return batch_size // replicas


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo).

    Without them oneDNN emulates bfloat16, and a mixed-precision step is several times slower than
    a float32 one.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
