"""Running a daemon: logging, the uvicorn server, graceful shutdown on SIGTERM / SIGINT (uvicorn finishes the
requests in flight, then the app's lifespan closes the daemon's workers and store), and start-up refusals as one
ConfigError line (``build_daemon``; the CLI's error convention is ``offchain.clikit``'s)."""

from __future__ import annotations

import logging
import sys
from typing import Any


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("web3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(app: Any, host: str, port: int, log_level: str, banner: str | None = None, **uvicorn_options: Any) -> int:
    """Serve ``app`` until SIGTERM or SIGINT; returns 0 after a clean shutdown."""
    import uvicorn

    from .limits import DEFAULT_MAX_BODY, RequestGuard

    if not isinstance(app, RequestGuard):  # every daemon's requests are bounded (body, idle body, JSON shape)
        app = RequestGuard(app, DEFAULT_MAX_BODY)
    options = {"h11_max_incomplete_event_size": 64 * 1024, "timeout_keep_alive": 5, "limit_concurrency": 1024,
               **uvicorn_options}
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                            timeout_graceful_shutdown=10, **options)
    server = uvicorn.Server(config)
    if banner:
        print(banner, file=sys.stderr, flush=True)
    server.run()
    return 0


def build_daemon(factory: Any, settings: Any, refusals: tuple[type[BaseException], ...] = ()) -> Any:
    """``factory(settings)``, with every start-up failure turned into one ConfigError line: configuration and store
    refusals as they are, missing files and bad values by their first line, an unreachable chain by name."""
    import requests

    from ..storage import StoreMismatch
    from .settings import ConfigError

    try:
        return factory(settings)
    except (ConfigError, StoreMismatch, *refusals) as exc:
        raise ConfigError(str(exc)) from None
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise ConfigError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None
    except requests.exceptions.RequestException as exc:
        raise ConfigError(f"cannot reach the chain at {settings.rpc_url}: {exc.__class__.__name__}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(f"cannot start: {first}") from None
