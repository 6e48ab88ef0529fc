"""One client connection through the guard proxy.

**Startup.** SSLRequest is answered ``S`` (and the socket wrapped in TLS) when the proxy
has a certificate, else ``N``; GSSENCRequest always ``N``; CancelRequest goes to the
proxy (see :meth:`PgProxy.cancel`). The StartupMessage is forwarded unchanged and the
authentication exchange is relayed message by message in both directions — cleartext,
MD5 and SCRAM-SHA-256 alike: the proxy never sees a password in a form it keeps, logs or
proposes. SCRAM relays untouched because the proxy's upstream connection is plain TCP,
so the server never offers channel binding (SCRAM-SHA-256-PLUS) that would bind to a TLS
session the client does not have. The actor is the ``user`` of the StartupMessage, and
it is trusted only once the server said AuthenticationOk.

**Judging.** Every statement is proposed through the :class:`~producers.AsyncGuard`
before it reaches the database, except transaction control (BEGIN, COMMIT, ROLLBACK,
SAVEPOINT, RELEASE), which changes no data and decides whether judged changes commit.

* Simple query: the string is split into statements (sqlglot) and all are judged
  concurrently; one refusal refuses the whole string, and none of it is forwarded.
* Extended query: a statement is judged at the **first Execute of each portal**, not at
  Parse. Parse, Bind and Describe run nothing, so judging there would only add a
  round trip; and one prepared statement is executed many times: judging each
  execution makes one proposal → one verdict → one outcome, lets a policy change or a
  velocity rule apply to the next execution, and matches the SDK's one-action-one-
  outcome model. Re-Executes of a suspended portal continue the same action.

**Refusing.** A refused statement behaves like one PostgreSQL rejected: the client gets an
ErrorResponse (SQLSTATE 42501 for a block and for an untrustworthy verdict, 58000 when
the guardrail did not answer, 57014 when the client cancelled the wait), and the server
is made to fail too — the proxy sends a ``Bind`` to a prepared statement that does not
exist (named ``lockgate: statement refused``) and swallows the server's error. So the
transaction status is exactly PostgreSQL's: inside ``BEGIN`` the transaction is
aborted (``E``); outside, the implicit transaction (the rest of the extended-protocol
batch up to Sync) rolls back; the server skips to Sync as after any error; and
ReadyForQuery follows. Nothing of a refused simple-query string runs.

**Recording.** Every allowed statement gets one ActionOutcome, published in the
background (the client does not wait for Kafka): ``committed`` when its transaction
committed (:mod:`~producers.pgproxy.transactions`), else ``failed`` with why. The
after_json holds the CommandComplete tag and row count, and the before/after images when
the table is configured (:mod:`~producers.pgproxy.images`).

**Blast radius.** When a row limit applies (per table, or per policy rule the verdict
matched) the proxy waits for the statement's CommandComplete *before the transaction can
commit* (a Flush, holding the client's next message), and if the real row count is over
the limit it makes the statement fail with 42501 — the same server-side failure as a
refusal, so the change never commits. No savepoint is needed: the error aborts the
transaction, and PostgreSQL's own rules then undo the statement (the implicit
transaction rolls back at Sync; an explicit one can only end in ROLLBACK, or in
ROLLBACK TO a savepoint the client took before the statement). A savepoint of our own
would instead let the rest of the transaction commit without the statement, which is
the partial commit PostgreSQL's error semantics exist to prevent. A simple query that
touches a limited or imaged table is run by the proxy through the extended protocol
inside one implicit transaction — the same semantics as the simple query — so it can
stop between the statement and its commit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from producers.errors import ActionBlocked, GuardError, VerdictRejected
from producers.guard import Action, Actor, GuardedAction
from producers.pgproxy.errors import (
    NotExecuted,
    OutcomeUnknown,
    ProtocolViolation,
    RolledBack,
    RowLimitExceeded,
    StatementFailed,
    StatementNotCommitted,
)
from producers.pgproxy.images import RowImage, after_image_sql, before_image_sql
from producers.pgproxy.protocol import (
    CANCEL_REQUEST,
    FLUSH,
    GSSENC_REQUEST,
    SSL_REQUEST,
    SYNC,
    Bind,
    Message,
    bind_message,
    close_message,
    command_tag_rows,
    cstring,
    data_row_values,
    describe_message,
    error_fields,
    error_response,
    execute_message,
    parse_bind,
    parse_execute,
    parse_message,
    parse_parse,
    read_message,
    read_startup,
    row_description_names,
    startup_parameters,
)
from producers.pgproxy.statements import (
    Control,
    DmlTarget,
    PrepareCommand,
    dml_target,
    redact_secrets,
    split_statements,
    sql_prepare_command,
    transaction_control,
)
from producers.pgproxy.transactions import TransactionOutcomes

if TYPE_CHECKING:
    from producers.pgproxy.server import PgProxy

__all__ = ["Session"]

log = logging.getLogger("producers.pgproxy")

#: The name of the prepared statement the proxy binds to make the server fail a refused
#: statement; it shows in the server's log as "prepared statement ... does not exist".
POISON_NAME = b"lockgate: statement refused"
POISON = bind_message(b"", POISON_NAME)
#: Statement and portal name of the proxy's own image queries.
IMAGE_NAME = b"lockgate.image"

SQLSTATE_BLOCKED = "42501"  # insufficient_privilege
SQLSTATE_UNAVAILABLE = "58000"  # system_error: a component outside PostgreSQL failed
SQLSTATE_CANCELLED = "57014"  # query_canceled

#: PostgreSQL client encodings → Python codecs. Others are refused (fail-closed).
PG_ENCODINGS = {
    "UTF8": "utf-8", "UNICODE": "utf-8", "SQL_ASCII": "latin-1", "LATIN1": "latin-1", "LATIN2": "iso8859-2",
    "LATIN3": "iso8859-3", "LATIN4": "iso8859-4", "LATIN5": "iso8859-9", "LATIN6": "iso8859-10",
    "LATIN7": "iso8859-13", "LATIN8": "iso8859-14", "LATIN9": "iso8859-15", "LATIN10": "iso8859-16",
    "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252", "WIN1253": "cp1253", "WIN1254": "cp1254",
    "WIN1255": "cp1255", "WIN1256": "cp1256", "WIN1257": "cp1257", "WIN1258": "cp1258", "WIN866": "cp866",
    "WIN874": "cp874", "KOI8R": "koi8_r", "KOI8U": "koi8_u", "ISO_8859_5": "iso8859-5",
    "ISO_8859_6": "iso8859-6", "ISO_8859_7": "iso8859-7", "ISO_8859_8": "iso8859-8", "EUC_JP": "euc_jp",
    "EUC_KR": "euc_kr", "EUC_CN": "gb2312", "SJIS": "shift_jis", "BIG5": "big5", "GBK": "gbk",
    "UHC": "cp949", "GB18030": "gb18030", "JOHAB": "johab",
}

_AUTH_NEEDS_REPLY = {3, 5, 7, 8, 9, 10, 11}  # cleartext, MD5, GSS, GSS continue, SSPI, SASL, SASL continue


@dataclass(eq=False)
class Run:
    """One statement on its way through the proxy: what was judged, and what came of it."""

    text: str
    protocol: str
    control: Control | None = None
    prepare: PrepareCommand | None = None
    judged_sql: str = ""
    bind: Bind | None = None
    param_types: tuple[int, ...] = ()
    handle: GuardedAction | None = None
    target: DmlTarget | None = None
    limit: tuple[int, str] | None = None  # (max rows, what set it)
    image_key: tuple[str, ...] | None = None
    before: RowImage | None = None
    after: RowImage | None = None
    tag: str | None = None
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    finished: bool = False

    @property
    def holds_completion(self) -> bool:
        """The proxy decides about the CommandComplete before the client sees it."""
        return self.limit is not None

    @property
    def needs_wait(self) -> bool:
        return self.limit is not None or (self.image_key is not None and self.target is not None
                                          and self.target.kind == "UPDATE")

    @property
    def needs_proxy_execution(self) -> bool:
        """A simple query holding this statement must be run step by step by the proxy."""
        return self.limit is not None or self.image_key is not None

    def settle_done(self, tag: str | None) -> None:
        if not self.done.done():
            self.done.set_result(tag)


@dataclass
class _Prepared:
    text: str | None  # None: the query bytes did not decode in the client encoding
    param_types: tuple[int, ...]


@dataclass
class _Portal:
    statement: _Prepared | None
    bind: Bind
    epoch: int
    run: Run | None = None


_MISSING: Any = object()


# --- what the server will answer, in order ----------------------------------------------------


class _Pending:
    """A forwarded message (or group) whose answers the server has not finished sending."""

    ends_batch = False  # Sync: the server's skip-after-error stops here
    handles_errors = False  # errors are this entry's to handle (Query, Sync)

    def on_message(self, s: Session, msg: Message) -> bool:
        s.to_client(msg)
        return True

    def on_error(self, s: Session, msg: Message) -> None:
        s.to_client(msg)

    def on_skipped(self, s: Session) -> None:
        """The server skipped this message after an earlier error in its batch."""


class _Forwarded(_Pending):
    def __init__(self, done_types: bytes, *, relay: bool = True, relay_only: bytes = b"",
                 undo: Any = None) -> None:
        self.done_types = done_types
        self.relay = relay
        self.relay_only = relay_only
        self.undo = undo

    def on_message(self, s: Session, msg: Message) -> bool:
        if self.relay or msg.type in self.relay_only:
            s.to_client(msg)
        return msg.type in self.done_types

    def on_error(self, s: Session, msg: Message) -> None:
        s.to_client(msg)
        if self.undo is not None:
            self.undo()

    def on_skipped(self, s: Session) -> None:
        if self.undo is not None:
            self.undo()


class _Executing(_Pending):
    def __init__(self, run: Run) -> None:
        self.run = run

    def on_message(self, s: Session, msg: Message) -> bool:
        if msg.type == b"C":
            tag = cstring(msg.body, 0)[0].decode("utf-8", "replace")
            if not self.run.holds_completion:
                s.to_client(msg)
            s.completed(self.run, tag)
            return True
        s.to_client(msg)
        if msg.type == b"I":  # EmptyQueryResponse
            s.completed(self.run, "")
            return True
        return msg.type == b"s"  # PortalSuspended: the portal continues at the next Execute

    def on_error(self, s: Session, msg: Message) -> None:
        s.to_client(msg)
        s.failed(self.run, msg)

    def on_skipped(self, s: Session) -> None:
        s.finish(self.run, NotExecuted("an earlier message of its batch failed; PostgreSQL skipped it"))


class _Syncing(_Pending):
    ends_batch = True
    handles_errors = True

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_message(self, s: Session, msg: Message) -> bool:
        s.to_client(msg)
        if msg.type == b"Z":
            s.on_ready(msg.body[:1], self.epoch)
            return True
        return False


class _SimpleQuery(_Pending):
    """A Query forwarded as is: its statements complete (or fail) in order, then ReadyForQuery."""

    ends_batch = True
    handles_errors = True

    def __init__(self, runs: list[Run], epoch: int) -> None:
        self.runs = runs
        self.index = 0
        self.epoch = epoch

    def _next(self) -> Run | None:
        if not self.runs:
            return None
        run = self.runs[min(self.index, len(self.runs) - 1)]
        self.index += 1
        return run

    def on_message(self, s: Session, msg: Message) -> bool:
        s.to_client(msg)
        if msg.type == b"C":
            run = self._next()
            if run is not None:
                s.completed(run, cstring(msg.body, 0)[0].decode("utf-8", "replace"))
        elif msg.type == b"E":
            run = self._next() if self.index < len(self.runs) else None  # else: the commit failed
            if run is not None:
                s.failed(run, msg)
            for rest in self.runs[self.index:]:
                s.finish(rest, NotExecuted("an earlier statement of its query string failed"))
            self.index = len(self.runs)
        elif msg.type == b"Z":
            for rest in self.runs[self.index:]:
                s.finish(rest, OutcomeUnknown("PostgreSQL reported fewer results than statements"))
            s.on_ready(msg.body[:1], self.epoch)
            return True
        return False


class _ImageQuery(_Pending):
    """The proxy's own image SELECT (Parse, Bind, Describe, Execute, Close, Close): all swallowed."""

    def __init__(self, image: RowImage, what: str, table: str) -> None:
        self.image = image
        self.what = what
        self.table = table
        self.closes = 0

    def on_message(self, s: Session, msg: Message) -> bool:
        if msg.type == b"T":
            self.image.on_columns(row_description_names(msg.body))
        elif msg.type == b"D":
            self.image.on_row(data_row_values(msg.body))
        elif msg.type == b"3":
            self.closes += 1
        return self.closes == 2

    def on_error(self, s: Session, msg: Message) -> None:
        fields = error_fields(msg.body)
        self.image.error = f"{fields.get('C', '')}: {fields.get('M', '')}"
        s.to_client(error_response(
            fields.get("C", "XX000"),
            f"lockgate: could not take the {self.what} of {self.table}: {fields.get('M', 'error')}",
            detail="The proxy records what an UPDATE/DELETE on this table changes; without the image "
                   "the statement is not allowed to commit.",
            hint="The image query runs as the connected user: it needs SELECT and UPDATE on the table.",
        ))


class _Poison(_Pending):
    """The failing Bind that stands in for a refused statement; its error becomes ``replacement``."""

    def __init__(self, replacement: Message) -> None:
        self.replacement = replacement

    def on_message(self, s: Session, msg: Message) -> bool:
        # Not expected (the proxy refuses the name to clients); the client still gets the
        # refusal, and the client loop forwards nothing more until its Sync.
        if msg.type == b"2":
            s.to_client(self.replacement)
            return True
        return False

    def on_error(self, s: Session, msg: Message) -> None:
        s.to_client(self.replacement)


# --- the session ---------------------------------------------------------------------------------


class Session:
    """A client connection, its upstream connection, and everything the proxy tracks about them."""

    def __init__(self, proxy: PgProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.config = proxy.config
        self.c_reader, self.c_writer = reader, writer
        self.s_reader: asyncio.StreamReader | None = None
        self.s_writer: asyncio.StreamWriter | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.tls = False
        self.user = ""
        self.database = ""
        self.application_name = ""
        self.actor = Actor("")
        self.resource = ""
        self.backend_key: bytes | None = None
        self.encoding = "utf-8"
        self.encoding_name = "UTF8"
        self.standard_strings = True
        self.tx_status = b"I"
        self.statements: dict[bytes, _Prepared] = {}
        self.portals: dict[bytes, _Portal] = {}
        self.sql_prepared: dict[str, str] = {}
        self.pending: deque[_Pending] = deque()
        self.skipping = False  # the server is skipping messages until the client's next Sync
        self.epoch = 0
        self.outcomes: TransactionOutcomes[Run] = TransactionOutcomes(self.finish)
        self.judging: asyncio.Future[Any] | None = None
        self.cancel_requested = False
        self.server_lost = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self._startup():
                log.info("session %s: user %s, database %s, application %r, tls %s", self.peer, self.user,
                         self.database, self.application_name, "on" if self.tls else "off")
                await self._relay()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except ProtocolViolation as exc:
            log.warning("session %s: %s; closing", self.peer, exc)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.backend_key is not None:
            self.proxy.sessions.pop(self.backend_key, None)
        in_flight = [p.run for p in self.pending if isinstance(p, _Executing)]
        in_flight += [r for p in self.pending if isinstance(p, _SimpleQuery) for r in p.runs[p.index:]]
        for run in in_flight:
            self.finish(run, OutcomeUnknown("the connection closed before PostgreSQL answered"))
        if self.outcomes.pending:
            if in_flight or self.server_lost or self.tx_status == b"I":
                self.outcomes.close(OutcomeUnknown("the connection closed before its transaction ended"))
            else:
                self.outcomes.close(RolledBack("the client disconnected inside a transaction; "
                                               "PostgreSQL rolled it back"))
        for writer in (self.s_writer, self.c_writer):
            if writer is not None:
                writer.close()
        for writer in (self.s_writer, self.c_writer):
            if writer is not None:
                try:
                    await writer.wait_closed()
                except (ConnectionError, OSError):
                    pass
        if self.actor.id:
            log.info("session %s: closed", self.peer)

    # --- startup and authentication ------------------------------------------------------------

    async def _startup(self) -> bool:
        while True:
            code, packet = await read_startup(self.c_reader)
            if code == SSL_REQUEST:
                if self.proxy.ssl_context is not None and not self.tls:
                    self.c_writer.write(b"S")
                    await self.c_writer.drain()
                    await self.c_writer.start_tls(self.proxy.ssl_context)
                    self.tls = True
                else:
                    self.c_writer.write(b"N")
                    await self.c_writer.drain()
                continue
            if code == GSSENC_REQUEST:
                self.c_writer.write(b"N")
                await self.c_writer.drain()
                continue
            if code == CANCEL_REQUEST:
                await self.proxy.cancel(packet)
                return False
            break
        if code >> 16 != 3:
            return await self._fatal("08P01", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
        if self.config.tls is not None and self.config.tls.required and not self.tls:
            return await self._fatal("28000", "lockgate: this proxy requires TLS (connect with sslmode=require)")
        params = startup_parameters(packet)
        self.user = params.get("user", "")
        if not self.user:
            return await self._fatal("28000", "no PostgreSQL user name specified in the startup packet")
        self.database = params.get("database") or self.user
        self.application_name = params.get("application_name", "")
        host, port = self.config.upstream_address
        try:
            s_reader, s_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.config.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            log.error("session %s: cannot reach upstream %s:%s: %s", self.peer, host, port, exc)
            return await self._fatal("08006", f"lockgate: the proxy cannot reach the database at {host}:{port}")
        self.s_reader, self.s_writer = s_reader, s_writer
        s_writer.write(packet)
        await s_writer.drain()
        authenticated = False
        while True:
            msg = await read_message(s_reader)
            self.c_writer.write(msg.encode())
            if msg.type == b"R":
                (auth,) = struct.unpack_from(">I", msg.body, 0)
                if auth == 0:
                    authenticated = True
                elif auth in _AUTH_NEEDS_REPLY:
                    await self.c_writer.drain()
                    reply = await read_message(self.c_reader)
                    if reply.type != b"p":
                        raise ProtocolViolation(f"expected an authentication response, got {reply.type!r}")
                    s_writer.write(reply.encode())  # relayed, never logged or kept
                    await s_writer.drain()
                    del reply
            elif msg.type == b"K":
                self.backend_key = msg.body
                self.proxy.sessions[msg.body] = self
            elif msg.type == b"S":
                self._parameter_status(msg.body)
            elif msg.type == b"E":
                await self.c_writer.drain()
                fields = error_fields(msg.body)
                log.info("session %s: upstream refused user %s: %s", self.peer, self.user, fields.get("C"))
                return False
            elif msg.type == b"Z":
                await self.c_writer.drain()
                if not authenticated:
                    raise ProtocolViolation("upstream became ready without AuthenticationOk")
                self.tx_status = msg.body[:1]
                self.actor = Actor(self.user, tuple(self.config.roles_of(self.user)),
                                   {"application_name": self.application_name, "client_addr": self.peer})
                self.resource = self.config.resource_for(self.database, self.user)
                return True

    async def _fatal(self, code: str, message: str) -> bool:
        self.c_writer.write(error_response(code, message, severity="FATAL").encode())
        await self.c_writer.drain()
        return False

    def _parameter_status(self, body: bytes) -> None:
        name, pos = cstring(body, 0)
        value, _ = cstring(body, pos)
        if name == b"client_encoding":
            self.encoding_name = value.decode("ascii", "replace").upper()
            self.encoding = PG_ENCODINGS.get(self.encoding_name, "")
        elif name == b"standard_conforming_strings":
            self.standard_strings = value == b"on"

    # --- relaying ------------------------------------------------------------------------------

    async def _relay(self) -> None:
        tasks = [asyncio.create_task(self._client_loop()), asyncio.create_task(self._server_loop())]
        try:
            _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, ProtocolViolation):
                raise result
            if isinstance(result, Exception) and not isinstance(result, ConnectionError | asyncio.IncompleteReadError):
                log.error("session %s: ended by an internal error", self.peer, exc_info=result)

    def to_client(self, msg: Message) -> None:
        self.c_writer.write(msg.encode())

    def _send(self, data: bytes) -> None:
        assert self.s_writer is not None
        self.s_writer.write(data)

    def _push(self, data: bytes, pending: _Pending) -> None:
        """Forward ``data`` and expect ``pending``'s answers — unless the server is skipping to Sync."""
        if self.skipping:
            pending.on_skipped(self)
            return
        self._send(data)
        self.pending.append(pending)

    async def _server_loop(self) -> None:
        assert self.s_reader is not None
        try:
            while True:
                msg = await read_message(self.s_reader)
                self._on_server_message(msg)
                await self.c_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server_lost = True

    def _on_server_message(self, msg: Message) -> None:
        if msg.type in (b"N", b"A"):  # notices and notifications: any time
            self.to_client(msg)
            return
        if msg.type == b"S":
            self._parameter_status(msg.body)
            self.to_client(msg)
            return
        head = self.pending[0] if self.pending else None
        if head is None:
            self.to_client(msg)
            return
        if msg.type == b"E":
            self.outcomes.error()
            if head.handles_errors:
                head.on_message(self, msg)
                return
            self.pending.popleft()
            head.on_error(self, msg)
            while self.pending and not self.pending[0].ends_batch:
                self.pending.popleft().on_skipped(self)
            if not self.pending:
                self.skipping = True  # the client's Sync is still to come
            return
        if head.on_message(self, msg):
            self.pending.popleft()

    async def _client_loop(self) -> None:
        assert self.s_writer is not None
        while True:
            msg = await read_message(self.c_reader)
            kind = msg.type
            if kind == b"Q":
                await self._on_query(msg)
            elif kind == b"P":
                self._on_parse(msg)
            elif kind == b"B":
                self._on_bind(msg)
            elif kind == b"E":
                await self._on_execute(msg)
            elif kind == b"D":
                self._push(msg.encode(), _Forwarded(b"Tn"))
            elif kind == b"C":
                self._on_close(msg)
            elif kind == b"S":
                self.skipping = False
                self._push(msg.encode(), _Syncing(self.epoch))
                self.epoch += 1
            elif kind == b"X":
                self._send(msg.encode())
                await self.s_writer.drain()
                return
            elif kind == b"F":
                self._refuse(error_response("0A000", "lockgate: fast-path function calls are not allowed "
                                            "through the guard proxy; call the function in SQL"), sync=True)
            else:  # Flush, CopyData/CopyDone/CopyFail, anything else: the server decides
                self._send(msg.encode())
            await self.s_writer.drain()

    # --- statements ----------------------------------------------------------------------------

    def decode(self, raw: bytes) -> str | None:
        if not self.encoding:
            return None
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            return None

    def _new_run(self, text: str, protocol: str, *, bind: Bind | None = None,
                 param_types: tuple[int, ...] = ()) -> Run:
        run = Run(text, protocol, bind=bind, param_types=param_types)
        run.control = transaction_control(text)
        if run.control is None:
            run.prepare = sql_prepare_command(text)
            judged = text
            if run.prepare is not None and run.prepare.kind == "prepare" and run.prepare.body:
                judged = run.prepare.body
            elif run.prepare is not None and run.prepare.kind == "execute" and run.prepare.name in self.sql_prepared:
                judged = self.sql_prepared[run.prepare.name]
            run.judged_sql = judged
        return run

    async def _on_query(self, msg: Message) -> None:
        text = self.decode(cstring(msg.body, 0)[0])
        if text is None:
            self._refuse(self._undecodable(), sync=True)
            return
        runs = [self._new_run(piece, "simple") for piece in split_statements(text)]
        if not await self._judge(runs, sync=True):
            return
        self.statements.pop(b"", None)  # a simple query replaces the unnamed statement and portal
        self.portals.pop(b"", None)
        if any(r.needs_proxy_execution for r in runs):
            await self._execute_stepwise(runs)
            return
        self._send(msg.encode())
        self.pending.append(_SimpleQuery(runs, self.epoch))
        self.epoch += 1

    def _on_parse(self, msg: Message) -> None:
        name, query, types = parse_parse(msg.body)
        if name.startswith(b"lockgate"):
            self._refuse(self._reserved_name(), sync=False)
            return
        old = self.statements.get(name, _MISSING)
        self.statements[name] = _Prepared(self.decode(query), types)
        self._push(msg.encode(), _Forwarded(b"1", undo=self._restorer(self.statements, name, old)))

    def _on_bind(self, msg: Message) -> None:
        bind = parse_bind(msg.body)
        old = self.portals.get(bind.portal, _MISSING)
        self.portals[bind.portal] = _Portal(self.statements.get(bind.statement), bind, self.epoch)
        self._push(msg.encode(), _Forwarded(b"2", undo=self._restorer(self.portals, bind.portal, old)))

    def _on_close(self, msg: Message) -> None:
        kind, name = msg.body[:1], cstring(msg.body, 1)[0]
        table: dict[bytes, Any] = self.statements if kind == b"S" else self.portals
        old = table.pop(name, _MISSING)
        self._push(msg.encode(), _Forwarded(b"3", undo=self._restorer(table, name, old)))

    @staticmethod
    def _restorer(table: dict[bytes, Any], key: bytes, old: Any) -> Any:
        def undo() -> None:
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        return undo

    async def _on_execute(self, msg: Message) -> None:
        if self.skipping:
            return  # the server skips it too
        name, max_rows = parse_execute(msg.body)
        portal = self.portals.get(name)
        if portal is None or portal.statement is None or portal.statement.text is None:
            why = ("its query text is not valid in the client encoding"
                   if portal is not None and portal.statement is not None else "the proxy does not know this portal")
            self._refuse(error_response(SQLSTATE_BLOCKED, f"lockgate: statement refused: {why}"), sync=False)
            return
        run = portal.run
        if run is not None:  # a suspended portal continues under its first verdict
            self._push(msg.encode(), _Executing(run))
            return
        run = self._new_run(portal.statement.text, "extended", bind=portal.bind,
                            param_types=portal.statement.param_types)
        if not await self._judge([run], sync=False):
            return
        if run.needs_wait and max_rows > 0:
            self.finish(run, NotExecuted("refused: fetched in chunks while a row limit or image applies"))
            self._refuse(error_response(
                "0A000", "lockgate: a statement under a row limit or with images must run to completion "
                "(Execute without a row count)"), sync=False)
            return
        portal.run = run
        if run.image_key is not None:
            self._take_before_image(run)
        self._push(msg.encode(), _Executing(run))
        if run.needs_wait:
            await self._decide(run)

    async def _execute_stepwise(self, runs: list[Run]) -> None:
        """Run a simple query's statements as extended-protocol steps in one implicit transaction."""
        for run in runs:
            query = run.text.encode(self.encoding)
            self._push(parse_message(b"", query), _Forwarded(b"1", relay=False))
            self._push(bind_message(b"", b""), _Forwarded(b"2", relay=False))
            self._push(describe_message(b"P", b""), _Forwarded(b"Tn", relay=False, relay_only=b"T"))
            if run.image_key is not None:
                self._take_before_image(run)
            self._push(execute_message(b""), _Executing(run))
            if run.needs_wait and not self.skipping:
                await self._decide(run)
        self.skipping = False
        self._push(SYNC, _Syncing(self.epoch))
        self.epoch += 1

    # --- judging -------------------------------------------------------------------------------

    async def _judge(self, runs: list[Run], *, sync: bool) -> bool:
        """Propose every non-control statement; True when all may run, else refuse them all."""
        guarded = [r for r in runs if r.control is None]
        if not guarded:
            return True
        reserved = next((r for r in guarded if r.prepare is not None and r.prepare.kind == "prepare"
                         and (r.prepare.name or "").startswith("lockgate")), None)
        if reserved is not None:
            self._refuse(self._reserved_name(), sync=sync)
            return False
        if not self.standard_strings and not all(self._is_scs_fix(r.text) for r in guarded):
            self._refuse(error_response(
                SQLSTATE_BLOCKED, "lockgate: statement refused: standard_conforming_strings is off, so the proxy "
                "cannot read statements the way PostgreSQL will",
                hint="SET standard_conforming_strings = on"), sync=sync)
            return False
        return await self._propose(guarded, sync=sync)

    @staticmethod
    def _reserved_name() -> Message:
        return error_response(SQLSTATE_BLOCKED, "lockgate: prepared statement names starting with \"lockgate\" "
                              "are reserved for the guard proxy")

    @staticmethod
    def _is_scs_fix(text: str) -> bool:
        return re.fullmatch(r"\s*(SET\s+(SESSION\s+)?standard_conforming_strings\s*(=|TO)\s*'?(on|true)'?|"
                            r"RESET\s+(standard_conforming_strings|ALL))\s*;?\s*", text, re.IGNORECASE) is not None

    async def _propose(self, guarded: list[Run], *, sync: bool) -> bool:
        self.cancel_requested = False
        self.judging = asyncio.ensure_future(asyncio.gather(*(self._admit(r) for r in guarded),
                                                            return_exceptions=True))
        try:
            results = await self.judging
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise
            self._refuse(error_response(SQLSTATE_CANCELLED, "canceling statement due to user request "
                                        "(lockgate: while waiting for the verdict; nothing was executed)"),
                         sync=sync)
            return False
        finally:
            self.judging = None
        refusal: BaseException | None = None
        for run, result in zip(guarded, results, strict=True):
            if isinstance(result, GuardedAction):
                run.handle = result
            elif refusal is None or (isinstance(result, ActionBlocked) and not isinstance(refusal, ActionBlocked)):
                refusal = result
        if refusal is not None:
            for run in guarded:
                self.finish(run, NotExecuted("another statement of its query string was refused"))
            self._refuse(self._refusal_message(refusal, len(guarded)), sync=sync)
            return False
        for run in guarded:
            self._plan(run)
        return True

    async def _admit(self, run: Run) -> GuardedAction:
        attributes: dict[str, str | int | float | bool | None] = {
            "sql": redact_secrets(run.judged_sql),
            "database": self.database,
            "application_name": self.application_name,
            "protocol": run.protocol,
        }
        if run.judged_sql != run.text:
            attributes["sql_command"] = redact_secrets(run.text)
        action = Action(self.actor, self.config.action_type, self.resource, attributes)
        try:
            handle = await self.proxy.guard.admit(action, timeout_s=self.config.timeout_s)
        except ActionBlocked as exc:
            log.warning("session %s: action %s blocked: %s", self.peer, exc.verdict.action_id, exc.verdict.reason)
            raise
        except GuardError as exc:
            log.warning("session %s: statement refused: %s", self.peer, exc)
            raise
        except Exception as exc:
            log.exception("session %s: proposing a statement failed; refusing it", self.peer)
            raise GuardError(f"the proxy could not propose the statement ({type(exc).__name__})") from exc
        log.debug("session %s: action %s allowed", self.peer, handle.action_id)
        return handle

    def _refusal_message(self, exc: BaseException, statements: int) -> Message:
        scope = "statement" if statements == 1 else f"query string ({statements} statements; none ran)"
        if isinstance(exc, ActionBlocked):
            v = exc.verdict
            rules = ", ".join(r.id for r in v.enforced_rules) or "policy default"
            return error_response(
                SQLSTATE_BLOCKED, f"lockgate: {scope} blocked by policy: {v.reason}",
                detail=f"action {v.action_id}; basis {v.basis}; rules: {rules}; "
                       f"policy {v.policy_name} v{v.policy_version}",
                hint="Nothing was executed. Change the statement, or ask for a policy change.")
        if isinstance(exc, VerdictRejected):
            return error_response(SQLSTATE_BLOCKED, f"lockgate: {scope} refused, the verdict was not trustworthy: "
                                  f"{exc}")
        return error_response(
            SQLSTATE_UNAVAILABLE, f"lockgate: {scope} refused, the guardrail did not answer: {exc}",
            hint="Nothing was executed (fail-closed). Retry when the Lockgate processor and Kafka are up.")

    def _undecodable(self) -> Message:
        return error_response(SQLSTATE_BLOCKED, f"lockgate: statement refused: it is not valid text in client "
                              f"encoding {self.encoding_name}, or that encoding is not supported by the proxy")

    def _refuse(self, replacement: Message, *, sync: bool) -> None:
        """Make the server fail in place of the refused statement; the client sees ``replacement``.

        ``sync``: a simple Query (or fast-path call) ends here, so a Sync follows and its
        ReadyForQuery answers the client; otherwise the client's own Sync will.
        """
        if self.skipping:
            return
        self._send(POISON)
        self.pending.append(_Poison(replacement))
        if sync:
            self._send(SYNC)
            self.pending.append(_Syncing(self.epoch))
            self.epoch += 1
        else:
            self.skipping = True

    # --- row limits and images -----------------------------------------------------------------

    def _plan(self, run: Run) -> None:
        """Which limit and which images apply to an allowed statement."""
        br = self.config.blast_radius
        images = self.config.images
        if not (br.tables or br.rules or images.tables):
            return
        run.target = dml_target(run.judged_sql)
        limits: list[tuple[int, str]] = []
        if run.target is not None:
            limits += [(br.tables[n], f"table {n}") for n in run.target.names() if n in br.tables][:1]
            if run.target.kind in ("UPDATE", "DELETE"):
                for name in run.target.names():
                    if name in images.tables:
                        run.image_key = images.tables[name].key
                        break
        if run.handle is not None:
            limits += [(br.rules[r.id], f"rule {r.id}") for r in run.handle.verdict.matched_rules if r.id in br.rules]
        if limits:
            run.limit = min(limits)
        if run.image_key is not None and run.target is not None and run.target.image_error is not None:
            run.before = RowImage(images.limits, run.image_key, self.encoding)
            run.before.error = f"no image: {run.target.image_error}"
            run.image_key = None

    def _take_before_image(self, run: Run) -> None:
        assert run.target is not None and run.image_key is not None
        limits = self.config.images.limits
        run.before = RowImage(limits, run.image_key, self.encoding)
        sql = before_image_sql(run.target, run.image_key, limits)
        values = run.bind.values if run.bind else ()
        referenced = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        declared = run.param_types
        # A parameter the image does not use gets type text (when the client left it
        # unspecified), or PostgreSQL could not infer its type and the image would fail.
        types = tuple((declared[i] if i < len(declared) else 0) or (0 if i + 1 in referenced else 25)
                      for i in range(len(values)))
        formats = run.bind.param_formats if run.bind else ()
        self._push(parse_message(IMAGE_NAME, sql.encode(self.encoding), types)
                   + bind_message(IMAGE_NAME, IMAGE_NAME, formats, values)
                   + describe_message(b"P", IMAGE_NAME) + execute_message(IMAGE_NAME)
                   + close_message(b"P", IMAGE_NAME) + close_message(b"S", IMAGE_NAME),
                   _ImageQuery(run.before, "before-image", run.target.table))

    def _take_after_image(self, run: Run) -> None:
        assert run.target is not None and run.image_key is not None and run.before is not None
        run.after = RowImage(self.config.images.limits, run.image_key, self.encoding)
        keys = run.before.keys
        if not keys or run.before.error:
            run.after.columns = list(run.before.columns)
            return
        sql = after_image_sql(run.target, run.image_key, len(keys))
        values = tuple(v for key in keys for v in key)
        self._push(parse_message(IMAGE_NAME, sql.encode(self.encoding))
                   + bind_message(IMAGE_NAME, IMAGE_NAME, (), values)
                   + describe_message(b"P", IMAGE_NAME) + execute_message(IMAGE_NAME)
                   + close_message(b"P", IMAGE_NAME) + close_message(b"S", IMAGE_NAME),
                   _ImageQuery(run.after, "after-image", run.target.table))

    async def _decide(self, run: Run) -> None:
        """Wait for the statement's result before anything can commit it, then keep or undo it."""
        assert self.s_writer is not None
        self._send(FLUSH)
        await self.s_writer.drain()
        tag = await run.done
        if tag is None:
            return  # it failed or was skipped: the server is skipping to Sync already
        rows = command_tag_rows(tag)
        if run.limit is not None and rows is not None and rows > run.limit[0]:
            limit, source = run.limit
            self.finish(run, RowLimitExceeded(f"{tag}: {rows} rows, over the limit of {limit} ({source}); "
                                              "the statement was made to fail before commit"))
            self._refuse(error_response(
                SQLSTATE_BLOCKED,
                f"lockgate: statement blocked: it affected {rows} rows, over the limit of {limit} ({source}); "
                "its changes were rolled back",
                detail=f"action {run.handle.action_id if run.handle else '?'}",
                hint="Nothing of it will commit. Narrow the WHERE clause, or ask for a higher limit."), sync=False)
            return
        if run.holds_completion:
            self.to_client(Message(b"C", tag.encode() + b"\x00"))
            self.outcomes.executed(run)
        if run.image_key is not None and run.target is not None and run.target.kind == "UPDATE":
            self._take_after_image(run)

    # --- results and outcomes ------------------------------------------------------------------

    def completed(self, run: Run, tag: str) -> None:
        """The server completed ``run`` with ``tag`` (its effect is not final until commit)."""
        run.tag = tag
        if run.control is not None:
            self.outcomes.control(run.control, tag)
        elif tag == "PREPARE TRANSACTION":
            self.outcomes.executed(run)
            self.outcomes.prepared_for_two_phase()
        else:
            self._track_prepared(run, tag)
            if not run.holds_completion:
                self.outcomes.executed(run)
        run.settle_done(tag)

    def _track_prepared(self, run: Run, tag: str) -> None:
        cmd = run.prepare
        if tag == "PREPARE" and cmd is not None and cmd.kind == "prepare" and cmd.name and cmd.body:
            self.sql_prepared[cmd.name] = cmd.body
        elif tag == "DEALLOCATE" and cmd is not None and cmd.name:
            self.sql_prepared.pop(cmd.name, None)
            self.statements.pop(cmd.name.encode(self.encoding or "utf-8"), None)
        elif tag in ("DEALLOCATE ALL", "DISCARD ALL"):
            self.sql_prepared.clear()
            self.statements.clear()

    def failed(self, run: Run, msg: Message) -> None:
        fields = error_fields(msg.body)
        self.finish(run, StatementFailed(f"SQLSTATE {fields.get('C', '?')}: {fields.get('M', '')}"))
        run.settle_done(None)

    def on_ready(self, status: bytes, epoch: int) -> None:
        self.tx_status = status
        self.outcomes.ready(status)
        if status == b"I":
            for name in [n for n, p in self.portals.items() if p.epoch <= epoch]:
                del self.portals[name]

    def finish(self, run: Run, error: StatementNotCommitted | None) -> None:
        """Publish ``run``'s one outcome (no-op for unjudged or already finished runs)."""
        if error is not None:
            run.settle_done(None)
        if run.handle is None or run.finished:
            return
        run.finished = True
        after: dict[str, Any] = {"command_tag": run.tag, "rows": command_tag_rows(run.tag or "")}
        before: dict[str, Any] | None = None
        if run.before is not None and run.target is not None:
            before = {"table": run.target.table, **run.before.to_json()}
            if run.after is not None:
                after["image"] = {"table": run.target.table, **run.after.to_json()}
            elif run.target.kind == "DELETE" and run.tag is not None:
                after["image"] = {"table": run.target.table, "columns": run.before.columns, "rows": [],
                                  "truncated": False}
        run.handle.record_change(before=before, after=after)
        self.proxy.record(run.handle, error)
