"""``mokuflow inpainting web`` (``make cloak``): the invisibility cloak as a local web page.

Serves http://127.0.0.1:<inpainting.web.port>/ on the registered ``inpainting@champion`` until
Ctrl-C (see :mod:`tasks.inpainting.webapp`). Refuses to start, with one line, when no champion is
registered. Only loopback addresses are accepted (checked in the params schema).
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=int, default=None, help="port (default: inpainting.web.port)")


def settings(params: dict, **overrides) -> dict:
    """``inpainting.web`` over the schema's defaults (and ``overrides`` that are not None)."""
    from tasks.core import MokuflowError
    from tasks.inpainting.schema import Web

    raw = {**((params.get("inpainting") or {}).get("web") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Web(**raw).model_dump()
    except ValueError as e:
        raise MokuflowError(f"inpainting.web: {' '.join(str(e).split())}") from None


def run(params: dict, port: int | None = None) -> None:
    from tasks.core import log
    from tasks.inpainting.webapp import address, make_server, start

    cfg = settings(params, port=port)
    server, store = make_server(params, cfg)
    try:
        thread = start(server)
        log(f"cloak web page on {address(server)} (Ctrl-C to stop)")
        print(f"cloak: open {address(server)}", flush=True)
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            server.should_exit = True
            thread.join(5)
    finally:
        store.close()
