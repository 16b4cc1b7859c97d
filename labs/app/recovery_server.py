"""python-socketio's AsyncServer with socket.io's connection state recovery (see recovery.py for the wire).

A CONNECT that carries a pid (and an offset) gets its old sid, rooms and session data back, then every
event it missed since that offset, replayed from the stream (recovery_manager.py), if its session is still
in Redis (recovery_sessions.py) and no entry after the offset was trimmed. Otherwise it gets a new session,
as any client does, and the replica counts why: `recovery_expired` (no such session: it expired, ended, or
was never issued), `recovery_trimmed`, `recovery_refused` (a pid or offset of the wrong shape),
`recovery_errors` (Redis failed). `recovered` counts the CONNECTs answered with the old sid and pid (what
the client sees as `recovered`). A replay that fails half-way drops the connection (`replay_errors`): the
client comes back with the offset it reached; one whose client left meanwhile stops (`replays_cut`). A
client back on the replica whose connection it left there has not noticed yet (a half-open TCP
connection) gets its session, and that connection is closed (`stale_closed`).

Pinned to python-socketio 5.18.1: `_handle_connect` and `_handle_disconnect` are its own, extended.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import socketio
from bidict import ValueDuplicationError
from socketio import exceptions, packet

from .recovery import RECOVERABLE, BadRecovery, Session, later, recovery_request
from .recovery_manager import REDIS_ERRORS, Gone, StreamManager, Trimmed
from .recovery_sessions import SessionStore

log = logging.getLogger("wslab.sio.recovery")


class RecoveringServer(socketio.AsyncServer):
    def __init__(self, manager: StreamManager, *, max_disconnection: float, **kwargs: Any) -> None:
        super().__init__(client_manager=manager, **kwargs)
        self.stream = manager
        self.max_disconnection = max_disconnection
        self.sessions: SessionStore | None = None
        #: the engine.io connection holding each held session, by sid
        self.owner: dict[str, str] = {}
        self.replays: set[asyncio.Future[None]] = set()
        #: the replica is shutting down: the sockets it closes now come back elsewhere, their sessions kept
        self.draining = False
        self.counts: Counter[str] = Counter(recovered=0, recovery_expired=0, recovery_trimmed=0,
                                            recovery_refused=0, recovery_errors=0, replay_errors=0, replays_cut=0)

    async def start(self) -> None:
        """Connect to Redis, read the stream from its end, renew held sessions; the server must not start
        its manager again on the first connection."""
        await self.stream.start()
        self.sessions = SessionStore(self.stream.redis, max_disconnection=self.max_disconnection)
        self.sessions.start()
        self.manager_initialized = True

    def stats(self) -> dict[str, Any]:
        held = len(self.sessions.held) if self.sessions else 0
        return {**self.counts, **self.stream.stats, "sessions_held": held, "stream_position": self.stream.position}

    async def _recoverable(self, data: Any) -> tuple[Session, str] | None:
        """The stored session a CONNECT asks for and the offset to replay from; None (and counted) when it
        cannot be recovered."""
        assert self.sessions is not None
        try:
            request = recovery_request(data)
        except BadRecovery as exc:
            self.counts["recovery_refused"] += 1
            log.info("recovery refused: %s", exc)
            return None
        if request is None:
            return None
        try:
            found = await self.sessions.peek(request.pid)
            if found is None:
                self.counts["recovery_expired"] += 1
                log.info("recovery failed: no session %s… (expired, ended or unknown)", request.pid[:6])
                return None
            # socket.io-client keeps the last offset of an earlier session until an event replaces it: an
            # offset from before this session began asks for nothing this session missed
            start = request.offset if request.offset and later(request.offset, found.since) else found.since
            await self.stream.check(start)
            claimed = await self.sessions.claim(found)
        except Trimmed as exc:
            self.counts["recovery_trimmed"] += 1
            log.info("recovery failed for %s…: %s", request.pid[:6], exc)
            return None
        except REDIS_ERRORS as exc:
            self.counts["recovery_errors"] += 1
            log.warning("recovery failed: Redis: %r", exc)
            return None
        if claimed is None:
            self.counts["recovery_expired"] += 1
            log.info("recovery failed: session %s… was taken or ended meanwhile", request.pid[:6])
        return None if claimed is None else (claimed, start)

    def _pre_connect(self, eio_sid: str, namespace: str, sid: str) -> bool:
        """python-socketio's pre_connect with a sid of our choosing; False when the connection is already in
        the namespace or the sid is in use here."""
        if self.manager.eio_sid_from_sid(sid, namespace) is not None:
            return False
        try:
            self.manager.basic_enter_room(sid, namespace, None, eio_sid=eio_sid)
        except ValueDuplicationError:
            return False
        self.manager.basic_enter_room(sid, namespace, sid, eio_sid=eio_sid)
        self.manager.pending_connect.setdefault(namespace, []).append(sid)
        return True

    async def _handle_connect(self, eio_sid: str, namespace: str, data: Any) -> None:
        namespace = namespace or "/"
        if not (namespace in self.handlers or namespace in self.namespace_handlers or self.namespaces == "*"
                or namespace in self.namespaces):
            await self._send_packet(eio_sid, self.packet_class(packet.CONNECT_ERROR, data="Unable to connect",
                                                               namespace=namespace))
            return
        assert self.sessions is not None
        restore = await self._recoverable(data)
        sid = restore[0].sid if restore else self.eio.generate_id()
        old = self.manager.eio_sid_from_sid(sid, namespace) if restore else None
        if old is not None and old != eio_sid:
            # Its client is back, so that connection is dead, but this replica has not noticed yet (a half-open
            # TCP connection waits for the ping timeout): close it, without ending the session it held.
            self.owner[sid] = eio_sid
            self.counts["stale_closed"] += 1
            log.info("%s is back: closing its stale connection %s", sid, old)
            await self._close(old)
        if not self._pre_connect(eio_sid, namespace, sid):
            if restore:
                self.counts["recovery_refused"] += 1
                log.info("recovery refused: %s is still connected here", sid)
                self.sessions.forget(sid)
                restore, sid = None, self.eio.generate_id()
            if not self._pre_connect(eio_sid, namespace, sid):
                await self._send_packet(eio_sid, self.packet_class(packet.CONNECT_ERROR, data="Unable to connect",
                                                                   namespace=namespace))
                return
        # From here the reader sees the socket: a restored one must wait for its replay, a new one starts here.
        if restore:
            self.stream.catching_up[sid] = None
        since = self.stream.position
        success, fail_reason = await self._accept(eio_sid, namespace, sid, data)
        if not success:
            self.stream.catching_up.pop(sid, None)
            self.sessions.forget(sid)
            self.owner.pop(sid, None)
            await self._send_packet(eio_sid, self.packet_class(packet.CONNECT_ERROR, data=fail_reason,
                                                               namespace=namespace))
            await self.manager.disconnect(sid, namespace, ignore_queue=True)
            return
        session: Session | None
        if restore:
            session = restore[0]
            for room in session.rooms:
                self.manager.basic_enter_room(sid, namespace, room)
            if session.data:
                (await self.eio.get_session(eio_sid))[namespace] = dict(session.data)
        else:
            try:
                session = await self.sessions.begin(sid, since)
            except REDIS_ERRORS as exc:
                session = None
                self.counts["session_errors"] += 1
                log.warning("no recoverable session for %s: Redis: %r", sid, exc)
        if session:
            self.owner[sid] = eio_sid
        ack = {"sid": sid, "pid": session.pid} if session else {"sid": sid}
        if not restore:
            await self._answer(eio_sid, namespace, ack)
            return
        # socket.io writes what a recovered socket missed before its CONNECT answer, and socket.io-client
        # buffers those events until the answer. Not on this coroutine: python-socketio handles a CONNECT
        # on the connection's read loop, which would read nothing else (a pong, the close) until the replay
        # ended.
        task = asyncio.ensure_future(self._recover(eio_sid, namespace, restore[0], restore[1], ack))
        self.replays.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self.replays.discard)

    async def _answer(self, eio_sid: str, namespace: str, ack: dict[str, str]) -> None:
        await self._send_packet(eio_sid, self.packet_class(packet.CONNECT, ack, namespace=namespace))
        await self.manager.connect(ack["sid"], namespace)

    async def _accept(self, eio_sid: str, namespace: str, sid: str, data: Any) -> tuple[bool, Any]:
        """The application's connect handler, as python-socketio calls it: (accepted, refusal)."""
        fail_reason = exceptions.ConnectionRefusedError().error_args
        try:
            if data:
                success = await self._trigger_event("connect", namespace, sid, self.environ[eio_sid], data)
            else:
                try:
                    success = await self._trigger_event("connect", namespace, sid, self.environ[eio_sid], None)
                except TypeError as exc:
                    try:
                        success = await self._trigger_event("connect", namespace, sid, self.environ[eio_sid])
                    except TypeError:
                        raise exc from None
        except exceptions.ConnectionRefusedError as exc:
            return False, exc.error_args
        except ConnectionRefusedError:
            return False, {"message": "Connection refused by server"}
        return success is not False, fail_reason

    async def _recover(self, eio_sid: str, namespace: str, session: Session, start: str,
                       ack: dict[str, str]) -> None:
        """Replay what the socket missed, then answer its CONNECT with its old sid and pid."""
        assert self.sessions is not None
        try:
            sent = await self.stream.replay(session.sid, eio_sid, namespace, session.rooms, start)
        except Gone:
            self.counts["replays_cut"] += 1
            log.info("%s left during its replay", session.sid)
            return
        except (Trimmed, *REDIS_ERRORS) as exc:
            self.counts["replay_errors"] += 1
            log.warning("replay to %s failed, dropping it to come back: %r", session.sid, exc)
            self.stream.catching_up.pop(session.sid, None)
            await self.sessions.end(session.sid, recoverable=True)
            await self._close(eio_sid)
            return
        # replay() last saw the socket here, with no await since: it is still this connection's
        await self._answer(eio_sid, namespace, ack)
        self.counts["recovered"] += 1
        log.info("recovered %s: %d missed events replayed after %s", session.sid, sent, start)

    async def _close(self, eio_sid: str, timeout: float = 1.0) -> None:
        """Close an engine.io connection: its disconnect runs first, then its close packet is flushed for at
        most `timeout` s (a half-open peer never takes it)."""
        try:
            await asyncio.wait_for(self.eio.disconnect(eio_sid), timeout)
        except TimeoutError:
            log.info("the close packet of %s was not taken within %gs", eio_sid, timeout)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        """An Engine.IO close from the client that no Socket.IO DISCONNECT came before is not a goodbye (that
        DISCONNECT ends the session first): socket.io calls it a transport close, and recovers from it."""
        if reason == self.reason.CLIENT_DISCONNECT:
            reason = self.reason.TRANSPORT_CLOSE
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _handle_disconnect(self, eio_sid: str, namespace: str, reason: Any = None) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        await super()._handle_disconnect(eio_sid, namespace, reason)
        if sid is None or self.sessions is None or self.owner.get(sid) != eio_sid:
            return  # no session, or one a newer connection of its client holds now
        del self.owner[sid]
        self.stream.catching_up.pop(sid, None)
        try:
            await self.sessions.end(sid, recoverable=self.draining or reason in RECOVERABLE)
        except REDIS_ERRORS as exc:
            log.warning("could not end the session of %s: %r", sid, exc)

    async def _store_rooms(self, sid: str, namespace: str | None) -> None:
        if self.sessions is not None:
            rooms = tuple(r for r in self.manager.get_rooms(sid, namespace or "/") if r != sid)
            await self.sessions.update(sid, rooms=rooms)

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Enter the room, and store it in the session before returning."""
        await super().enter_room(sid, room, namespace)
        await self._store_rooms(sid, namespace)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        await super().leave_room(sid, room, namespace)
        await self._store_rooms(sid, namespace)

    async def save_session(self, sid: str, session: dict[str, Any], namespace: str | None = None) -> None:
        """Save the session data, in Redis too (JSON only) before returning."""
        await super().save_session(sid, session, namespace)
        if self.sessions is not None:
            await self.sessions.update(sid, data=dict(session))

    async def close(self) -> None:
        for task in self.replays:
            task.cancel()
        if self.sessions is not None and self.sessions.task is not None:
            self.sessions.task.cancel()
        await self.stream.close()
