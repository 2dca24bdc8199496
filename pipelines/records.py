"""Raw records -> validated events, items and user profiles, or a dead letter with the reason.

Pure Python (no Beam), so every rule is unit-tested directly; `transforms.py` runs these functions
inside Beam DoFns. A raw record is a text line (JSON lines, CSV) or a dict (Parquet).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import logging
import math
import re
import reprlib
from typing import Any, NamedTuple, Optional, Sequence, Union

from marn_tf.config import Config

# Dead-letter reasons: the complete list, documented in docs/pipeline.md.
MALFORMED = "malformed_record"
BAD_UTF8 = "bad_utf8"
MISSING_FIELD = "missing_field"
BAD_TIMESTAMP = "bad_timestamp"
BAD_VALUE = "bad_value"
BAD_VECTOR_LENGTH = "bad_vector_length"
NON_FINITE = "non_finite_value"
NEGATIVE_COUNT = "negative_count"
UNKNOWN_ITEM = "unknown_item_id"
DUPLICATE = "duplicate"
UNREADABLE = "unreadable_file"  # the rest of a file past the point where it cannot be read (truncated, corrupt)
REASONS = (MALFORMED, BAD_UTF8, MISSING_FIELD, BAD_TIMESTAMP, BAD_VALUE, BAD_VECTOR_LENGTH, NON_FINITE,
           NEGATIVE_COUNT, UNKNOWN_ITEM, DUPLICATE, UNREADABLE)

# What the outputs can hold: integers go to int64 features and columns, floats to float32.
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_TIMESTAMP = 253402300800  # 10000-01-01T00:00:00Z: later epoch seconds are no time a datetime can show

# Values quoted in a detail: short and safe whatever their size or nesting (a detail is one line of a report).
_quote = reprlib.Repr()
_quote.maxstring = _quote.maxother = _quote.maxlong = 60

log = logging.getLogger(__name__)
_WORD = re.compile(r"\w+", re.UNICODE)


class DeadLetter(NamedTuple):
    source: str  # events | items | users
    reason: str  # one of REASONS
    detail: str  # what exactly is wrong, naming the field
    record: str  # the record as read (text, or JSON of a Parquet row)
    file: str = ""
    field: str = ""  # the one optional field dropped from a record that was kept; "" when the record was rejected

    def to_json(self) -> str:
        text = json.dumps(self._asdict(), ensure_ascii=False)
        return text if _is_utf8(text) else json.dumps(self._asdict())  # a lone surrogate stays a \ud800 escape


class Event(NamedTuple):
    user_id: str
    item_id: str
    timestamp: int  # epoch seconds
    event_type: str
    clicked: int  # 0/1 for impressions, 0 for behaviour events
    request_id: str
    position: int  # 0 when unknown
    context: tuple  # values of EventFields.context, "" when missing


class Item(NamedTuple):
    item_id: str
    id_values: tuple  # values of ItemFields.id_fields, "" when missing
    image: Optional[tuple]  # floats of image_dim, None when missing
    title: Optional[str]
    statistics: tuple  # ints of ItemFields.statistics, -1 when missing
    field_errors: tuple = ()  # (field, reason, detail) of each optional field dropped as bad (marked missing)


class UserProfile(NamedTuple):
    user_id: str
    features: tuple  # values of UserFields.features, "" when missing


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass
class RawRecord:
    """What a reader produced: the bytes of one text line, or a Parquet row."""

    payload: Union[bytes, dict]
    file: str = ""
    csv_header: Optional[Sequence[str]] = None  # column names when the line is CSV


def record_text(raw: RawRecord) -> str:
    if isinstance(raw.payload, dict):
        try:
            return json.dumps(raw.payload, default=str, ensure_ascii=False)
        except (ValueError, RecursionError):  # a value json cannot write (an int past the digit limit)
            return _quote.repr(raw.payload)
    return raw.payload.decode("utf-8", errors="replace")


def _short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_raw(raw: RawRecord) -> dict:
    """Text line or Parquet row -> dict of column -> value; raises Rejected."""
    if isinstance(raw.payload, dict):
        return raw.payload
    try:
        text = raw.payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected(BAD_UTF8, f"not valid UTF-8 at byte {err.start}") from err
    if raw.csv_header is not None:
        try:
            (row,) = list(csv.reader([text], strict=True))
        except (csv.Error, ValueError) as err:
            raise Rejected(MALFORMED, f"CSV line does not parse: {err}") from err
        if len(row) != len(raw.csv_header):
            raise Rejected(MALFORMED, f"CSV line has {len(row)} fields, the header {len(raw.csv_header)}")
        return {k: (v if v != "" else None) for k, v in zip(raw.csv_header, row)}
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise Rejected(MALFORMED, f"not valid JSON: {err.msg} at column {err.colno}") from err
    except RecursionError:
        raise Rejected(MALFORMED, "JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise Rejected(MALFORMED, f"not readable JSON: {_short_text(str(err))}") from None
    if not isinstance(record, dict):
        raise Rejected(MALFORMED, f"a JSON line must be an object, got {type(record).__name__}")
    return record


# -- field parsers (each raises Rejected naming the field) -------------------------------------
def required_id(record: dict, field: str) -> str:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Rejected(MISSING_FIELD, f"{field} is missing")
    return id_value(value, field)


def optional_id(record: dict, field: Optional[str]) -> str:
    if not field or record.get(field) is None:
        return ""
    return id_value(record[field], field)


def id_value(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected(BAD_VALUE, f"{field} must be a string, got {_quote.repr(value)}")
    if isinstance(value, int) and abs(value) > INT64_MAX:
        raise Rejected(BAD_VALUE, f"{field} is an integer of {len(str(abs(value)))} digits, not an id")
    value = str(value).strip()
    if not value.isprintable():  # ids go one a line into vocabulary files
        raise Rejected(BAD_VALUE, f"{field} contains a control or other non-printable character")
    return value


def timestamp_seconds(value: Any, field: str) -> int:
    """Epoch seconds (int, float or digit string) or ISO-8601 text; naive times are UTC."""
    if value is None or value == "":
        raise Rejected(MISSING_FIELD, f"{field} is missing")
    if isinstance(value, bool):
        raise Rejected(BAD_TIMESTAMP, f"{field} {value!r} is not a time")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", value):
        value = float(value)
    if isinstance(value, (int, float)):
        if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value < MAX_TIMESTAMP:
            raise Rejected(BAD_TIMESTAMP, f"{field} {_quote.repr(value)} is not epoch seconds between 1970 and 9999")
        return int(value)
    if isinstance(value, dt.datetime):  # Parquet timestamp columns
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise Rejected(BAD_TIMESTAMP,
                           f"{field} {_quote.repr(value)} is neither epoch seconds nor ISO-8601") from None
    else:
        raise Rejected(BAD_TIMESTAMP, f"{field} must be epoch seconds or ISO-8601 text, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return timestamp_seconds(int(parsed.timestamp()), field)  # the same range as epoch seconds


def integer(value: Any, field: str) -> int:
    """An integer that an int64 holds; a number beyond that range is `non_finite_value`."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Rejected(NON_FINITE, f"{field} is {value}")
        if value != int(value):
            raise Rejected(BAD_VALUE, f"{field} {value!r} is not an integer")
        value = int(value)
    if isinstance(value, int):
        if abs(value) > INT64_MAX:
            raise Rejected(NON_FINITE, f"{field} {_quote.repr(value)} is beyond the 64-bit integer range")
        return value
    if not isinstance(value, str):
        raise Rejected(BAD_VALUE, f"{field} must be an integer, got {type(value).__name__}")
    try:
        return integer(float(value.strip()), field)
    except ValueError:
        raise Rejected(BAD_VALUE, f"{field} {_quote.repr(value)} is not an integer") from None


def float_vector(value: Any, field: str, dim: int) -> Optional[tuple]:
    """A list of floats (JSON, Parquet) or space/comma/semicolon-separated text (CSV); None if empty."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip().strip("[]")) if p]
        try:
            value = [float(p) for p in parts]
        except ValueError:
            raise Rejected(BAD_VALUE, f"{field} has a value that is not a number") from None
    if isinstance(value, (dict, bool)) or not hasattr(value, "__iter__"):
        raise Rejected(BAD_VALUE, f"{field} must be a list of numbers, got {type(value).__name__}")
    # float() takes True and "1.5": in a vector of numbers a boolean or a string is a bad value, not a number.
    odd = next((x for x in value if isinstance(x, (bool, str, bytes)) or x is None), _NOTHING)
    if odd is not _NOTHING:
        raise Rejected(BAD_VALUE, f"{field} holds {_quote.repr(odd)}, not a number")
    try:
        vector = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise Rejected(BAD_VALUE, f"{field} must be a list of numbers") from None
    except OverflowError:  # an integer too large for a float
        raise Rejected(NON_FINITE, f"{field} has a value beyond the float32 range") from None
    if not vector:
        return None
    if len(vector) != dim:
        raise Rejected(BAD_VECTOR_LENGTH, f"{field} has {len(vector)} values, items.image_dim is {dim}")
    # Stored as float32: a value finite in Python (1e39) would become inf there.
    beyond = next((i for i, x in enumerate(vector) if not abs(x) <= FLOAT32_MAX), None)
    if beyond is not None:
        raise Rejected(NON_FINITE, f"{field}[{beyond}] is {vector[beyond]!r}: NaN, infinite or beyond the float32 "
                                   f"range (+-{FLOAT32_MAX:.4g})")
    return vector


_NOTHING = object()


# -- the three tables --------------------------------------------------------------------------
def parse_event(record: dict, config: Config) -> Event:
    f = config.events
    event_type = required_id(record, f.event_type)
    if event_type != f.impression_type and event_type not in f.behaviour_types:
        raise Rejected(BAD_VALUE, f"{f.event_type} {_quote.repr(event_type)} is neither {f.impression_type!r} "
                                  f"nor one of "
                                  f"events.behaviour_types {f.behaviour_types}")
    clicked = 0
    if event_type == f.impression_type:
        raw = record.get(f.clicked)
        if raw is None or raw == "":
            raise Rejected(MISSING_FIELD, f"{f.clicked} is missing on an impression")
        clicked = {"true": 1, "false": 0}.get(raw.strip().lower()) if isinstance(raw, str) else None
        clicked = integer(raw, f.clicked) if clicked is None else clicked
        if clicked not in (0, 1):
            raise Rejected(BAD_VALUE, f"{f.clicked} must be 0 or 1, got {_quote.repr(raw)}")
    position = 0
    if f.position and record.get(f.position) not in (None, ""):
        position = integer(record[f.position], f.position)
        if position < 1:
            raise Rejected(BAD_VALUE, f"{f.position} must be >= 1, got {position}")
    return Event(
        user_id=required_id(record, f.user_id),
        item_id=required_id(record, f.item_id),
        timestamp=timestamp_seconds(record.get(f.timestamp), f.timestamp),
        event_type=event_type,
        clicked=clicked,
        request_id=optional_id(record, f.request_id),
        position=position,
        context=tuple(optional_id(record, c) for c in f.context),
    )


def parse_item(record: dict, config: Config) -> Item:
    """The item, or Rejected when its id is bad. A bad optional field (image, title, a statistic, an id field)
    is marked missing and listed in `field_errors`: the item and the events that show it are kept."""
    f = config.items
    item_id = required_id(record, f.item_id)
    errors = []

    def optional(field: str, parse, missing):
        try:
            return parse()
        except Rejected as err:
            errors.append((field, err.reason, _short_text(err.detail)))
        except (ValueError, TypeError, ArithmeticError, RecursionError) as err:  # what odd values make Python raise
            errors.append((field, MALFORMED, _short_text(f"{field} cannot be read ({type(err).__name__}): {err}")))
        return missing

    title = optional(f.title, lambda: _title(record.get(f.title), f.title), None) if f.title else None
    statistics = tuple(optional(name, lambda name=name: _count(record.get(name), name), -1) for name in f.statistics)
    return Item(
        item_id=item_id,
        id_values=tuple(optional(name, lambda name=name: optional_id(record, name), "") for name in f.id_fields),
        image=optional(f.image, lambda: float_vector(record.get(f.image), f.image, f.image_dim), None)
        if f.image else None,
        title=title if title and title.strip() else None,
        statistics=statistics,
        field_errors=tuple(errors),
    )


def _title(title: Any, field: str) -> Optional[str]:
    if title is not None and not isinstance(title, str):
        raise Rejected(BAD_VALUE, f"{field} must be text, got {type(title).__name__}")
    if title is not None and not _is_utf8(title):
        raise Rejected(BAD_VALUE, f"{field} holds a lone surrogate (a \\ud800-\\udfff escape): not text")
    return title


def _count(value: Any, field: str) -> int:
    """A catalog counter; -1 when missing."""
    if value is None or value == "":
        return -1
    count = integer(value, field)
    if count < 0:
        raise Rejected(NEGATIVE_COUNT, f"{field} is {count}; counts cannot be negative")
    return count


def parse_user(record: dict, config: Config) -> UserProfile:
    f = config.users
    return UserProfile(user_id=required_id(record, f.user_id),
                       features=tuple(optional_id(record, name) for name in f.features))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_LOGGED: set = set()  # exception types outside user-data errors, logged once per process
PARSERS = {"events": parse_event, "items": parse_item, "users": parse_user}
Parsed = Union[Event, Item, UserProfile]


def parse_record(raw: RawRecord, source: str, config: Config) -> Union[Parsed, DeadLetter]:
    """One raw record of `source` -> its parsed form, or a DeadLetter: never an exception.

    The guard of the whole job against user data: the field parsers reject what they know is wrong,
    and whatever else a record's bytes make Python raise (deep nesting, a number no type holds, a type
    no rule expected) dead-letters that record, never the job.
    """
    try:
        return PARSERS[source](parse_raw(raw), config)
    except Rejected as err:
        reason, detail = err.reason, _short_text(err.detail)
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:  # what odd user values make Python raise
        reason, detail = MALFORMED, f"cannot be parsed ({type(err).__name__}): {_short_text(str(err))}"
    except Exception as err:  # noqa: BLE001 -- likely a bug of ours: the record is dead-lettered, the bug logged
        if type(err) not in _LOGGED:
            _LOGGED.add(type(err))
            log.exception("unexpected %s parsing a %s record of %s (a bug in marn?)", type(err).__name__, source,
                          raw.file)
        reason, detail = MALFORMED, f"cannot be parsed ({type(err).__name__}): {_short_text(str(err))}"
    return DeadLetter(source, reason, detail, record_text(raw), raw.file)


def title_words(title: Optional[str], max_tokens: int) -> list[str]:
    """Lower-cased word tokens of a title, at most `max_tokens`."""
    return _WORD.findall(title.lower())[:max_tokens] if title else []
