"""The skeleton every daemon (relayer, node, verifier) is built on: settings (flags > env > file), key loading,
Prometheus metrics, the FastAPI app factory with one error shape and health/metrics routes,
and serving with graceful shutdown.

  settings  DaemonSettings, load_settings, ConfigError (options from them: offchain.clikit)
  keys      load_account (keystore, or an anvil dev key on chain 31337 only)
  metrics   Counter, Gauge, Histogram, Registry
  errors    ApiError, field_path, from_validation_error
  app       create_app (routers, lifespan, an OpenAPI extension), operations_router, install_error_handlers
  limits    RequestGuard: the outermost ASGI bounds (body size, idle body, JSON depth, lone surrogates)
  disk      DiskReserve: 503 store_full for new work while a local store's disk is nearly full
  serve     setup_logging, serve, build_daemon
  worker    Worker, Supervisor, Backoff, WorkerHealth: one supervised loop per worker (backoff, health, stop)
  events    Signal: one typed event of a daemon's hub (relayer/node/verifier events.py)
  plugins   install_plugins: test plug-ins from OPG_<ROLE>_PLUGINS (fault injection), no production switch
"""
