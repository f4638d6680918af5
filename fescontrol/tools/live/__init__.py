"""Live view: a local web page streaming the real control loop, with safe live changes.

NOT A CLEARED MEDICAL DEVICE. See docs/orthotist.md. ``fes live`` starts it.
The session (control-loop side) is :mod:`fescontrol.tools.live.session`; the web server
(starlette + uvicorn, imported only when serving) is :mod:`fescontrol.tools.live.server`.
"""
from fescontrol.tools.live.session import (EDITABLE, LiveBuffer, LiveError, LiveSession, port_source,
                      recording_source)

__all__ = ["EDITABLE", "LiveBuffer", "LiveError", "LiveSession", "port_source", "recording_source"]
