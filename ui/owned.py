"""What the server computed from a session's own model leaves with that session's uploads.

The server keeps what it computes in bounded caches shared by every session, keyed by the model's name: Streamlit's
`st.cache_data` / `st.cache_resource` functions (ui/cache.py and the pages' caches), the figures (ui/figure_cache.py),
the deployments (ui/deploy_jobs.py) and the finished training runs (ui/training.py). An own model's name,
"upload:<session id>:<hash>" (ui/uploads.py), is only ever used by its session, so when the janitor deletes that
session's uploads (ui/janitor.py) `forget` drops every entry made from them: the compressed models, reports,
deployments, figures and runs. Nothing of them is on the shared disk cache in the first place (ui/disk_cache.py keeps
a session's own models to its process's memory: the session lives on that one process).

- A Streamlit-cached function whose first argument is a model name is declared with `forgettable(st.cache_data(...))`
  instead of `st.cache_data(...)`: each entry it makes for an own model is noted under its session (the arguments as
  given, which is what Streamlit hashes), and cleared exactly (`func.clear(*args, **kwargs)`); sample entries are
  not noted. The notes are two strings per entry and go with the session too.
- Any other store registers `forget(gone)` with `on_forget`: it drops the entries whose model name `gone(name)` says
  belong to the departed session.
"""
from __future__ import annotations

import functools
import inspect
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from ui import janitor
from ui.session import own_model_owner

Gone = Callable[[Any], bool]  # a cache key's model name -> does it belong to the departed session?
Fn = TypeVar("Fn", bound=Callable[..., Any])

_made: defaultdict[str, set[tuple]] = defaultdict(set)  # session id -> (cached function, model, args, kwargs) of entries
_stores: list[Callable[[Gone], None]] = []
_lock = threading.Lock()


def forgettable(cache: Callable[[Fn], Fn]) -> Callable[[Fn], Fn]:
    """`cache` (e.g. `st.cache_data(max_entries=64)`) for a function whose first argument is a model name, noting
    each entry it makes for an own model so that `forget` clears it."""
    def decorate(fn: Fn) -> Fn:
        names = list(inspect.signature(fn).parameters)
        cached: Any = None

        @functools.wraps(fn)  # Streamlit reads the parameters and source through __wrapped__: same keys as `fn`
        def miss(*args: Any, **kwargs: Any) -> Any:
            model = args[0] if args else kwargs.get(names[0], "")
            owner = own_model_owner(model)
            if owner is not None:  # unhashed ("_") arguments are not noted: Streamlit ignores them, they may be big
                positional = tuple(None if names[i].startswith("_") else a for i, a in enumerate(args))
                keywords = tuple((k, None if k.startswith("_") else v) for k, v in kwargs.items())
                with _lock:
                    _made[owner].add((cached, model, positional, keywords))
            return fn(*args, **kwargs)

        cached = cache(miss)
        return cached

    return decorate


def on_forget(store: Callable[[Gone], None]) -> None:
    """Register a store's `forget(gone)`, called when a session's uploads are deleted (or one of its models is)."""
    if store not in _stores:
        _stores.append(store)


def belongs_to(session_id: str) -> Gone:
    """The test `forget` hands the stores: a model name of this session's own models (any other key: False)."""
    return lambda name: isinstance(name, str) and own_model_owner(name) == session_id


def forget(session_id: str) -> None:
    """Drop everything computed from this session's own models, in every cache of this process."""
    _drop(session_id, belongs_to(session_id))
    with _lock:
        _made.pop(session_id, None)


def forget_model(name: str) -> None:
    """Drop everything computed from one own model (its session removed it: ui/uploads.py `remove`)."""
    owner = own_model_owner(name)
    if owner is not None:
        _drop(owner, lambda model: model == name)


def _drop(session_id: str, gone: Gone) -> None:
    with _lock:
        notes = _made.get(session_id, set())
        made = [note for note in notes if gone(note[1])]
        notes.difference_update(made)
    for cached, _, args, kwargs in made:
        cached.clear(*args, **dict(kwargs))
    for store in list(_stores):
        store(gone)


janitor.on_gone(forget)
