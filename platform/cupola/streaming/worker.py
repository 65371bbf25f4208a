"""The stream worker: one named Ray actor per stream feature group, consuming its topic in a thread.

The loop starts in the constructor, so when Ray restarts a killed worker (`max_restarts=-1`) the
new one resumes from the last checkpoint by itself, with nothing calling it. `cupola features
stream start` runs it detached (it outlives the command); `jobs/stream_features.py` runs it as part
of a Ray job (it stops with the job). The actor reserves no CPU so it never blocks other work from
scheduling; on a busy node it competes for CPU like any process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import ray

from cupola.config import Settings
from cupola.errors import InvalidInput
from cupola.runtime import ensure_ray
from cupola.stores.event_topics import ensure_topic

NAMESPACE = "cupola"
ERROR_BACKOFF_S = 2.0
logger = logging.getLogger(__name__)


def worker_name(group: str, settings: dict[str, str]) -> str:
    """One worker per group and datalake: two platforms on one Ray cluster never share one."""
    return f"cupola-stream-{group}-{hashlib.sha1(settings['data_root'].encode()).hexdigest()[:10]}"


@ray.remote(num_cpus=0, max_restarts=-1)
class StreamWorker:
    def __init__(self, group: str, settings: dict[str, str]) -> None:
        from cupola.features import FeatureStore
        from cupola.streaming.processor import StreamProcessor

        store = FeatureStore(Settings.load(**settings))
        self.processor = StreamProcessor(store.registry.get(group), store.settings, store.datalake, store.online)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"stream-{group}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.lock:
                    self.processor.step()
            except Exception as error:  # keep consuming: a failed step is recorded and retried from its offsets
                logger.exception("stream step of %s failed", self.processor.spec.name)
                self.processor.last_error = f"{type(error).__name__}: {error}"
                time.sleep(ERROR_BACKOFF_S)

    def status(self) -> dict[str, Any]:
        return self.processor.status()

    def checkpoint(self) -> dict[str, Any]:
        """Land and checkpoint now (tests and `stream stop`); returns the status after it."""
        with self.lock:
            self.processor.save()
            return self.processor.status()

    def stop(self) -> dict[str, Any]:
        """Finish the current step, checkpoint, leave the topic."""
        self.stopping.set()
        self.thread.join()
        self.processor.close()
        return self.processor.status()


def start_worker(settings: Settings, group: str, detached: bool = True) -> Any:
    """The group's worker, started if it is not running (first caller wins the name); the group and the Kafka
    setting are checked before Ray is joined."""
    from cupola.features import FeatureStore

    spec = FeatureStore(settings).registry.get(group)
    if spec.stream is None:
        raise InvalidInput(
            f"feature group '{group}' declares no stream: add `stream: {{topic: ...}}` and `cupola features apply`",
            "stream",
        )
    if not settings.kafka_bootstrap_servers:
        raise InvalidInput(
            "stream workers read Kafka: set CUPOLA_KAFKA_BOOTSTRAP_SERVERS (a local broker: cluster/kafka/start)",
            "kafka_bootstrap_servers",
        )
    ensure_topic(settings, spec.stream.topic)  # an unreachable broker is a clear error here, not a dead actor
    ensure_ray(settings)
    shared = settings.for_workers()
    options: dict[str, Any] = {"name": worker_name(group, shared), "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    return StreamWorker.options(**options).remote(group, shared)  # type: ignore[attr-defined]


def find_worker(settings: Settings, group: str) -> Any | None:
    """The running worker of `group`, or None."""
    try:
        return ray.get_actor(worker_name(group, settings.for_workers()), namespace=NAMESPACE)
    except ValueError:
        return None


def stop_worker(settings: Settings, group: str) -> dict[str, Any] | None:
    """Checkpoint and end the group's worker; None when none runs."""
    worker = find_worker(settings, group)
    if worker is None:
        return None
    status = ray.get(worker.stop.remote())
    ray.kill(worker, no_restart=True)
    return status
