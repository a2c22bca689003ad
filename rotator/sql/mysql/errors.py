"""MariaDB/MySQL errors, told apart by their numbers (never their messages)."""

from __future__ import annotations

from rotator.faults import Fault, Kind

try:
    import MySQLdb
except ImportError:  # no `mysql` extra: Django's MySQL backend (and so this builder) is unused
    MySQLdb = None  # type: ignore[assignment]

DUP_ENTRY = 1062
LOCK_WAIT_TIMEOUT = 1205
DEADLOCK = 1213
TIMEOUTS = (1317, 1969, 3024)  # query interrupted; max_statement_time; max_execution_time
GONE = (1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031)
LOCAL_INFILE_REFUSED = (1148, 2068, 3948, 4166)


def error_code(exc: BaseException) -> int | None:
    """The server's (or client library's) error number behind ``exc``, if any."""
    cause = exc.__cause__ or exc
    if MySQLdb is None or not isinstance(cause, MySQLdb.MySQLError):
        return None
    code = cause.args[0] if cause.args else None
    return code if isinstance(code, int) else None


def fault(exc: BaseException) -> Fault | None:
    """What kind of passing fault ``exc`` is, or None when it is not one to retry."""
    code = error_code(exc)
    if code == LOCK_WAIT_TIMEOUT:
        return Fault(Kind.LOCK, "a row lock was held longer than innodb_lock_wait_timeout")
    if code == DEADLOCK:
        return Fault(Kind.CONFLICT, "deadlock with another transaction")
    if code in TIMEOUTS:
        return Fault(Kind.TIMEOUT, f"statement interrupted ({code})")
    if code == DUP_ENTRY:
        return Fault(Kind.COLLISION, "a new value was taken by a concurrent insert")
    if code in GONE:
        return Fault(Kind.CONNECTION, f"the connection to the server was lost ({code})")
    return None
