# A stack from Debian's packages, as a user runs one: PostgreSQL (its data
# directory made by a job, checked with pg_isready), Redis, a migration
# job, a web app with two instances (app_count) behind orch's proxy, and
# nginx in front of the same instances.
#
#   apt-get install postgresql redis-server nginx python3
#   orch up examples/stack                        (as a user other than root)
#   orch up -var pg_user=postgres examples/stack  (as root: postgres refuses
#                                                  to run as root)
#
#   curl http://127.0.0.1:8105/                     through nginx
#   curl -H 'Host: app.localhost' http://127.0.0.1:8104/  through orch's proxy
#
# The order is the dependencies': the app starts once the migration is
# done, which waits for postgres to answer pg_isready; nginx starts once
# every instance answers. Ctrl-C stops it the other way round: nginx, the
# app, then postgres and redis. Edit the app's env and save: its instances
# are replaced one at a time, each new one serving before the old one
# stops. Edit nginx.conf.in and save: nginx is reloaded (SIGHUP), not
# restarted. Change app_count's default and save: instances are added or
# removed, and nginx is reloaded with them as its upstream servers.

variable "base_port" {
  type        = number
  default     = 8100
  description = "postgres listens on it, redis on the next port, orch's proxy on base_port + 4, nginx on base_port + 5, the app's instances from base_port + 10 on."
}

variable "app_count" {
  type        = number
  default     = 2
  description = "How many instances of the app run, behind orch's proxy and nginx. Change it under orch up: the instances are added or removed, and nginx is reloaded with the new list."

  validation {
    condition     = var.app_count >= 1 && var.app_count <= 50
    error_message = "app_count must be from 1 to 50 (the app's ports are base_port + 10 on)."
  }
}

variable "data" {
  type        = string
  default     = "/tmp/orch-stack"
  description = "Where postgres and nginx keep their files (made if missing)."
}

variable "pg_user" {
  type        = string
  default     = ""
  description = "The user postgres runs as (\"\": orch's own user)."
}

variable "pg_bin" {
  type        = string
  default     = "/usr/lib/postgresql/15/bin"
  description = "Where Debian puts initdb and postgres (Debian 12: PostgreSQL 15)."
}

locals {
  pg_port    = var.base_port
  redis_port = var.base_port + 1
  app_port   = var.base_port + 10 # of the first instance; the next on the next ports
  proxy_port = var.base_port + 4
  nginx_port = var.base_port + 5
  pgdata     = "${var.data}/pg"
}

orch {
  proxy {
    listen = "127.0.0.1:${var.base_port + 4}" # local.proxy_port (the orch block sees variables only)
  }
}

# The data directory, made by initdb the first time only.
job "initdb" {
  # As postgres's user, which may not enter the configuration directory
  # (every path here is absolute).
  dir     = "/"
  command = ["sh", "-c", "test -s ${local.pgdata}/PG_VERSION || { mkdir -p ${var.data} && exec ${var.pg_bin}/initdb -D ${local.pgdata} -A trust -U postgres; }"]
  user    = var.pg_user == "" ? null : var.pg_user
}

daemon "postgres" {
  command = ["${var.pg_bin}/postgres", "-D", local.pgdata, "-p", "${local.pg_port}",
  "-k", var.data, "-c", "listen_addresses=127.0.0.1"]
  user       = var.pg_user == "" ? null : var.pg_user
  dir        = "/"
  depends_on = [job.initdb]

  # It takes a moment to accept connections: until pg_isready says so, it
  # is starting, not failing, and nothing that depends on it starts.
  health {
    exec     = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "${local.pg_port}"]
    interval = "250ms"
  }

  stop {
    signal = "SIGINT" # postgres's fast shutdown
  }
}

daemon "redis" {
  command = ["redis-server", "--bind", "127.0.0.1", "--port", "${local.redis_port}",
  "--save", "", "--appendonly", "no"]

  # PING, not a TCP connect: a redis that hangs (stopped, or stuck in a
  # long command) still completes the handshake from its listen backlog,
  # and only an answer tells that it serves.
  health {
    exec     = ["redis-cli", "-h", "127.0.0.1", "-p", "${local.redis_port}", "ping"]
    interval = "250ms"
    timeout  = "1s"
  }
}

job "migrate" {
  command = ["psql", "-q", "-h", "127.0.0.1", "-p", "${local.pg_port}", "-U", "postgres",
  "-c", "CREATE TABLE IF NOT EXISTS visits (at timestamptz NOT NULL DEFAULT now())"]
  depends_on = [daemon.postgres]
}

daemon "app" {
  count      = var.app_count
  command    = ["python3", "${path.root}/app.py", "${local.app_port + count.index}", "${local.redis_port}"]
  depends_on = [job.migrate, daemon.redis]
  env = {
    PYTHONUNBUFFERED = "1"
    GREETING         = "Hello from the stack"
  }

  health {
    http     = "http://127.0.0.1:${local.app_port + count.index}/health"
    interval = "250ms"
  }

  lifecycle {
    create_before_destroy = true
    max_parallel          = 1
  }

  service {
    name  = "app"
    port  = local.app_port + count.index
    route = "app.localhost/"
    drain = "2s"
  }
}

# nginx's configuration: nginx.conf.in rendered with this stack's ports
# and paths (templatefile; nginx's own variables are written $name there),
# and written where nginx reads it (after initdb, which makes the data
# directory as postgres's user). The rendered text is part of the job's
# configuration: an edit of nginx.conf.in runs the job again, under orch
# up too, and the plan shows what changed in it line by line.
job "nginx_conf" {
  depends_on = [job.initdb]
  env = {
    CONF = templatefile("${path.root}/nginx.conf.in", {
      data = "${var.data}/nginx"
      port = local.nginx_port
      apps = [for i in range(var.app_count) : local.app_port + i]
    })
  }
  command = ["sh", "-c", "mkdir -p ${var.data}/nginx && printf '%s' \"$CONF\" > ${var.data}/nginx/nginx.conf"]
}

daemon "nginx" {
  command    = ["nginx", "-e", "stderr", "-p", "${var.data}/nginx", "-c", "${var.data}/nginx/nginx.conf"]
  depends_on = [job.nginx_conf, daemon.app]

  health {
    http     = "http://127.0.0.1:${local.nginx_port}/health"
    interval = "250ms"
  }

  stop {
    signal = "SIGQUIT" # nginx's graceful shutdown
  }

  # A new nginx.conf is taken by a SIGHUP: nginx re-reads it and replaces
  # its workers itself, with no request lost, keeping its pid. Without
  # this block the change would go unseen (nginx's own attributes did not
  # change).
  reload {
    signal = "SIGHUP"
    on     = [job.nginx_conf.env.CONF]
  }
}
