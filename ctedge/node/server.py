"""The node: a pynetdicom Storage SCP at the edge, plain objects (spool, tracker, results,
outbox, status) behind it, and two worker threads (classify, send).

Handlers decide and answer statuses; everything they keep is on disk before they answer.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from pathlib import Path

from ..errors import CtedgeError
from .completion import CompletionTracker
from .config import NodeConfig
from .errors import NodeError, SpoolFull
from .outbox import Backoff, Outbox, Sender, send_pending
from .results import ResultObjects, ResultStore, node_section
from .spool import Spool
from .status import STATUS_FILE, Status

LOG = logging.getLogger("ctedge.node")

# C-STORE statuses (PS3.4 Annex B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC210
CT_STORAGE = ("1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
              "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
              "1.2.840.10008.5.1.4.1.1.2.2")  # Legacy Converted Enhanced CT Image Storage
VERIFICATION = "1.2.840.10008.1.1"
MAX_ATTEMPTS = 3  # classifications of one study that end in an internal error before giving up


def _pynetdicom():
    try:
        import pynetdicom
    except ImportError:
        raise NodeError("ctedge serve needs pynetdicom and highdicom: install the node extra "
                        "(uv pip install -e '.[node]')") from None
    return pynetdicom


class Node:
    """One running DICOM node. `start()` recovers state from disk and listens; `stop()` shuts
    down cleanly. `backend`: an open inference backend to use (else opened from the config)."""

    def __init__(self, config: NodeConfig, backend=None,
                 result_objects: ResultObjects | None = None):
        self.config = config
        self.spool = Spool(config.spool_root, config.max_study_instances)
        self.results = ResultStore(config.state_dir / "results")
        self.outbox = Outbox(config.state_dir / "outbox")
        self.tracker = CompletionTracker(config.quiet_period_s)
        self.status = Status(config.state_dir / STATUS_FILE, config.ae_title, config.port)
        self.result_objects = (result_objects if result_objects is not None
                               else ResultObjects.default(config.destination is not None,
                                                          config.send_summary))
        self.backend = backend
        self._owns_backend = backend is None
        self._stop = threading.Event()
        self._send_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._assocs: dict[int, dict] = {}
        self._assoc_lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self.port = config.port

    # ---- life cycle -----------------------------------------------------------------------

    def start(self) -> Node:
        _pynetdicom()
        from ..artifact import default_model_path
        from ..backends import open_backend

        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            spooled = self.spool.open()
        except OSError as exc:
            raise NodeError(f"spool {self.spool.root}: {exc.strerror or exc}; make it a "
                            "writable folder") from None
        done = self.results.open()
        self.outbox.open()
        waiting = [s for s in spooled if s.key not in done]
        # Silence while the node was down says nothing about a sender (it could not reach us):
        # every unfinished study gets a full quiet period from now.
        for s in waiting:
            self.tracker.arrived(s.key, max(s.last_arrival, time.time()))
        if self.config.destination is not None:
            from .sr import load_highdicom

            load_highdicom()  # import highdicom now, not on the first result (3-6 s cold here)
        if self.backend is None:
            self.backend = open_backend(self.config.classify.model or default_model_path(),
                                        self.config.classify.backend)
        self._server = self._listen()
        self.port = self._server.server_address[1]
        self.status.set(state="running", port=self.port)
        LOG.info("node %s listening on %s:%d; spool holds %d studies (%d awaiting "
                 "classification), %d results, %d waiting to be sent",
                 self.config.ae_title, self.config.host, self.port, len(spooled), len(waiting),
                 len(done), len(self.outbox.pending()))
        if not self.config.allowed_aets:
            LOG.warning("allowed_aets is empty: any calling AE title is accepted")
        for target, name in ((self._classify_loop, "classify"), (self._send_loop, "send")):
            thread = threading.Thread(target=target, name=f"ctedge-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._refresh_status(force=True)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop accepting, let open associations finish (up to timeout_s), finish the study
        being classified and the send in progress, write the status, release the backend."""
        self._stop.set()
        self._send_now.set()
        if self._server is not None:
            self._server.shutdown()
            deadline = time.monotonic() + timeout_s
            while self._server.active_associations and time.monotonic() < deadline:
                time.sleep(0.05)
            self._server = None
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        self.status.set(state="stopped")
        self._refresh_status(force=True)
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None
        LOG.info("node %s stopped", self.config.ae_title)

    def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop cleanly (main thread only)."""
        got = threading.Event()
        previous = {s: signal.signal(s, lambda *_: got.set())
                    for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not got.wait(0.5):
                pass
            LOG.info("node %s: stop requested", self.config.ae_title)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the DICOM edge -------------------------------------------------------------------

    def _listen(self):
        _pynetdicom()
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom import _config as netconfig
        from pynetdicom.transport import ThreadedAssociationServer

        netconfig.LOG_REQUEST_IDENTIFIERS = False  # pynetdicom would log query identifiers
        netconfig.LOG_RESPONSE_IDENTIFIERS = False
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.maximum_pdu_size = cfg.max_pdu
        ae.require_calling_aet = list(cfg.allowed_aets)
        ae.add_supported_context(VERIFICATION)
        storage = ([cx.abstract_syntax for cx in AllStoragePresentationContexts]
                   if cfg.accept_other_storage else list(CT_STORAGE))
        for sop_class in storage:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_C_ECHO, lambda event: SUCCESS),
                    (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_ACCEPTED, self._on_accepted),
                    (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_RELEASED, self._on_closed),
                    (evt.EVT_ABORTED, self._on_closed)]
        allowed_hosts = frozenset(cfg.allowed_hosts)
        node = self

        class Server(ThreadedAssociationServer):
            # socketserver's default listen backlog is 5: a burst of senders would have SYNs
            # dropped and wait seconds for TCP to retry (seen with 50 concurrent associations).
            request_queue_size = max(128, 2 * cfg.max_associations)

            def verify_request(self, request, client_address) -> bool:
                if allowed_hosts and client_address[0] not in allowed_hosts:
                    node.status.count("associations_refused")
                    LOG.warning("connection from %s refused: address not in allowed_hosts",
                                client_address[0])
                    return False
                return True

        try:
            server = ae.make_server((cfg.host, cfg.port), evt_handlers=handlers,
                                    ssl_context=self._tls_context(), server_class=Server)
        except OSError as exc:
            raise NodeError(f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or exc}); "
                            "pick a free port or stop the other listener") from None
        thread = threading.Thread(target=server.serve_forever, name="ctedge-dicom", daemon=True)
        thread.start()
        ae._servers.append(server)  # as ae.start_server does; server.shutdown() removes it
        return server

    def _tls_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if cfg.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
            if cfg.tls_ca is not None:
                context.load_verify_locations(str(cfg.tls_ca))
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise NodeError(f"TLS: cannot load {cfg.tls_cert} / {cfg.tls_key}: {exc}; pass a "
                            "PEM certificate and its key") from None
        return context

    def _on_accepted(self, event) -> None:
        with self._assoc_lock:
            self._assocs[id(event.assoc)] = {"start": time.perf_counter(), "stored": 0,
                                             "duplicate": 0, "refused": 0, "malformed": 0}
        self.status.count("associations")

    def _on_rejected(self, event) -> None:
        self.status.count("associations_refused")
        remote = event.assoc.remote
        LOG.warning("association from %s@%s rejected (calling AE title not allowed, or too "
                    "many associations)", remote.get("ae_title"), remote.get("address"))

    def _on_closed(self, event) -> None:
        self.tracker.release(id(event.assoc))
        with self._assoc_lock:
            stats = self._assocs.pop(id(event.assoc), None)
        if stats is None:
            return
        remote = event.assoc.remote
        how = "released" if event.event.name == "EVT_RELEASED" else "aborted"
        LOG.info("association %s@%s %s after %.2f s: %d stored, %d duplicate, %d refused, "
                 "%d malformed", remote.get("ae_title"), remote.get("address"), how,
                 time.perf_counter() - stats["start"], stats["stored"], stats["duplicate"],
                 stats["refused"], stats["malformed"])

    def _tally(self, event, what: str) -> None:
        with self._assoc_lock:
            stats = self._assocs.get(id(event.assoc))
            if stats is not None:
                stats[what] += 1

    def _on_store(self, event) -> int:
        try:
            ds = event.dataset
            study_uid = str(ds.StudyInstanceUID).strip()
            sop_uid = str(event.request.AffectedSOPInstanceUID or ds.SOPInstanceUID).strip()
            if not study_uid or not sop_uid:
                raise ValueError("no StudyInstanceUID or SOPInstanceUID")
            encoded = event.encoded_dataset()
        except Exception as exc:  # malformed data must never stop the node
            self._tally(event, "malformed")
            self.status.count("instances_malformed")
            self.status.error(f"malformed instance refused ({type(exc).__name__})")
            return CANNOT_UNDERSTAND
        try:
            key, new = self.spool.store(encoded, study_uid, sop_uid)
        except SpoolFull as exc:
            self._tally(event, "refused")
            self.status.count("instances_refused")
            self.status.error(str(exc))
            LOG.error("instance refused (out of resources): %s", exc)
            return OUT_OF_RESOURCES
        if new:
            self._tally(event, "stored")
            self.status.count("instances_stored")
            if self.results.exists(key):
                LOG.warning("study %s: instance arrived after the study was classified; kept "
                            "in the spool, not classified again", key)
            else:
                self.tracker.arrived(key, holder=id(event.assoc))
        else:
            self._tally(event, "duplicate")
            self.status.count("instances_duplicate")
        return SUCCESS

    # ---- workers --------------------------------------------------------------------------

    def _classify_loop(self) -> None:
        while not self._stop.is_set():
            for key in self.tracker.take_due():
                if self._stop.is_set():
                    self.tracker.arrived(key, 0.0)  # classified after the restart
                    break
                if not self.results.exists(key):
                    try:
                        self.classify(key)
                    except Exception as exc:  # e.g. no room for the result: try again later
                        LOG.exception("study %s: result not written; retrying after another "
                                      "quiet period", key)
                        self.status.error(f"study {key}: result not written ({exc})")
                        self.tracker.arrived(key)
            self._refresh_status()
            wait = self.tracker.next_due_in()
            self._stop.wait(0.2 if wait is None else min(max(wait, 0.01), 0.2))

    def classify(self, key: str) -> None:
        """Classify one spooled study, put its result objects in the outbox, write its JSON."""
        from ..pipeline import classify_study

        started = time.perf_counter()
        quiet_since = time.time() - self.config.quiet_period_s
        instances = self.spool.instances(key)
        LOG.info("study %s complete: %d instances; classifying", key, instances)
        self.status.set(classifying=key)
        self.status.write(force=True)
        try:
            try:
                result = classify_study(self.spool.study_dir(key), self.config.classify,
                                        backend=self.backend)
            except CtedgeError as exc:
                self._failed(key, str(exc), instances, quiet_since, started)
                return
            except Exception as exc:  # a decode worker killed, a bug: retry, then record it
                self._attempts[key] = self._attempts.get(key, 0) + 1
                if self._attempts[key] < MAX_ATTEMPTS:
                    LOG.warning("study %s: internal error while classifying (%s: %s); attempt "
                                "%d of %d after another quiet period", key, type(exc).__name__,
                                exc, self._attempts[key] + 1, MAX_ATTEMPTS)
                    self.tracker.arrived(key)
                    return
                LOG.exception("study %s: internal error while classifying", key)
                self._failed(key, f"internal error: {type(exc).__name__}: {exc}", instances,
                             quiet_since, started)
                return
            node = node_section(instances, quiet_since, started)
            if self.config.destination is not None:
                try:
                    names = self.outbox.put(key, self.result_objects.build(result))
                    node["result_objects"] = names
                except Exception as exc:
                    LOG.exception("study %s: result objects could not be built", key)
                    node["result_objects_error"] = f"{type(exc).__name__}: {exc}"
                    self.status.error(f"study {key}: result objects not built ({exc})")
            self.results.write_result(key, result, node)
            d = result.decision
            self.status.count("studies_classified")
            self.status.result(key, d.label, "classified")
            LOG.info("study %s classified in %.2f s: %s (%s rule: %s)", key,
                     time.perf_counter() - started, d.label, d.rule, d.reason)
            self._send_now.set()
        finally:
            self.status.set(classifying=None)

    def _failed(self, key, reason, instances, quiet_since, started) -> None:
        self.results.write_failure(key, reason, node_section(instances, quiet_since, started))
        self.status.count("studies_failed")
        self.status.result(key, None, "not classified")
        self.status.error(f"study {key}: not classified: {reason}")
        LOG.warning("study %s not classified: %s", key, reason)

    def _send_loop(self) -> None:
        dest = self.config.destination
        if dest is None:
            return
        sender = Sender(dest, self.config.ae_title)
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        while not self._stop.is_set():
            if backoff.ready(time.monotonic()):
                for key in self.outbox.pending():
                    if self._stop.is_set() or not self.results.exists(key):
                        continue
                    try:
                        uids = send_pending(self.outbox, sender, key)
                    except Exception as exc:  # SendFailed, OSError, or a bug: retry later
                        delay = backoff.failed(time.monotonic())
                        self.status.count("send_failures")
                        self.status.error(f"study {key}: send failed: {exc}")
                        LOG.warning("result %s not sent: %s; retry in %.1f s", key, exc, delay)
                        break
                    backoff.succeeded()
                    self.status.count("results_sent")
                    self.status.result(key, None, "sent")
                    LOG.info("result %s sent to %s: %d object(s)", key, dest.ae_title,
                             len(uids))
            self._send_now.wait(max(0.05, min(1.0, backoff.next_at - time.monotonic())))
            self._send_now.clear()

    def _refresh_status(self, force: bool = False) -> None:
        self.status.set_queues(studies_receiving=self.tracker.receiving(),
                               outbox_pending=len(self.outbox.pending()),
                               associations_active=len(self._assocs))
        self.status.write(force=force)


def read_status(state_dir: str | Path) -> dict:
    import json

    path = Path(state_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NodeError(f"{path} does not exist; has `ctedge serve` run with this state_dir?") \
            from None
    except (OSError, ValueError) as exc:
        raise NodeError(f"{path}: unreadable status ({exc})") from None

