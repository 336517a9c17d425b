"""The router actor: the proxy's protocol in front of several providers' proxies.

The manifest's component is ``theater_py_actors.router:RouterActor``; the manifest ships as
``openai-router``. It speaks the proxy's protocol, so keep its handle as a
:data:`~theater_py_actors.openai_proxy.ProxyHandle` too. See ``docs/router.md``.
"""

from __future__ import annotations

from theater_py_actors.router.actor import RouterActor

__all__ = ["RouterActor"]
