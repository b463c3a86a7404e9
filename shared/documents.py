"""JSON documents a user hands Kuaijing as files (a registry import, a city file): read, checked against their model,
and anything wrong with them told as one `KuaijingError` naming the file and the fields at fault."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from shared.errors import KuaijingError

M = TypeVar("M", bound=BaseModel)


def read_document(path: Path, model: type[M], *, what: str, label: str = "") -> M:
    """The file at `path` as a `model`; `what` says what it should have been ("a city"), `label` comes before the
    path in the messages ("the city file ")."""
    try:
        return model.model_validate(orjson.loads(path.read_bytes()))
    except OSError as e:
        raise KuaijingError(f"cannot read {label}{path}: {e}") from e
    except orjson.JSONDecodeError as e:
        raise KuaijingError(f"{label}{path} is not JSON: {e}") from e
    except ValidationError as e:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)[:20]
        )
        raise KuaijingError(f"{label}{path} is not {what}:\n{problems}") from e
