"""The session the widgets of one viewer share."""

from __future__ import annotations

import gc

from napari.utils._proxies import PublicOnlyProxy

from phenossl.napari import _session
from phenossl.napari._session import session_for


def test_one_session_per_viewer_behind_napari_proxies(make_napari_viewer):
    viewer, other = make_napari_viewer(), make_napari_viewer()
    session = session_for(viewer)
    assert session_for(PublicOnlyProxy(viewer)) is session  # what plugin widgets receive
    assert session_for(PublicOnlyProxy(viewer)) is session
    assert session_for(viewer) is session
    assert session_for(other) is not session


def test_sessions_go_with_their_viewer():
    class Owner:  # any weak-referenceable object
        pass

    owner = Owner()
    session_for(owner)
    key = id(owner)
    assert key in _session._SESSIONS
    del owner
    gc.collect()
    assert key not in _session._SESSIONS


def test_long_error_messages_are_cut_for_notifications():
    from phenossl.napari._widgets._runner import MAX_MESSAGE, describe_error

    names = ", ".join(f'"features.{i}.weight"' for i in range(400))
    message = describe_error(RuntimeError(f"Error(s) in loading state_dict: Missing {names}"))
    assert message.startswith("Error(s) in loading state_dict: Missing")
    assert len(message) < MAX_MESSAGE + 60 and "more characters in the log" in message
    assert describe_error(ValueError("short")) == "short"
