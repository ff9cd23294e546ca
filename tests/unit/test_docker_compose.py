"""docker-compose.yml agrees with the code it runs.

There is no Docker engine on the dev and CI machines, so the compose file cannot be run here;
these tests read it with PyYAML and check it against what it depends on: the settings
(`BORDERMON_*` variables), the command line (every `bordermon ...` a service runs parses),
topics/topics.toml, the Prometheus config that scrapes the workers, the files it mounts, the
Dockerfile the bordermon services are built from, and the start order (healthchecks and
`depends_on` conditions).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bordermon.admin.topics import load_declarations
from bordermon.cli import build_parser
from bordermon.settings import SETTING_NAMES, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = "deploy/docker/Dockerfile"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"

SETTINGS_VARIABLES = {f"BORDERMON_{name.upper()}" for name in SETTING_NAMES} | {"BORDERMON_CONFIG"}
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}
SHELL_VARIABLES = {"RANDOM": "12345"}
"""Shell variables a service script may use, with a sample value for parsing its flags."""


# --- reading the compose file -------------------------------------------------------------


def bordermon_services() -> dict[str, dict[str, Any]]:
    """The services built from the bordermon Dockerfile."""
    return {
        name: service
        for name, service in SERVICES.items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == DOCKERFILE
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def _expand(word: str, service: str) -> str:
    """Compose turned `$$` into `$`; then the shell expands the variables we know."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in SHELL_VARIABLES, f"{service}: unknown shell variable ${name}"
        return SHELL_VARIABLES[name]

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", substitute, word)


def shell_script(service_name: str, service: dict[str, Any]) -> str | None:
    """The script when the service runs a shell (`entrypoint: [bash, ..., -c]`), else None."""
    entrypoint = as_list(service.get("entrypoint"))
    if not entrypoint or entrypoint[0] not in SHELLS:
        return None
    assert entrypoint[-1] == "-c", f"{service_name}: a shell entrypoint ends with -c"
    command = service.get("command")
    return command if isinstance(command, str) else " ".join(as_list(command))


def bordermon_commands(service_name: str, service: dict[str, Any]) -> list[list[str]]:
    """Every `bordermon` argv (without the program name) the service runs."""
    script = shell_script(service_name, service)
    if script is None:
        entrypoint = as_list(service.get("entrypoint")) or dockerfile_entrypoint()
        assert entrypoint == ["bordermon"], f"{service_name} runs {entrypoint}"
        return [as_list(service.get("command")) or dockerfile_cmd()]
    # A `$` compose would interpolate must be written `$$`: a lone one is a compose variable.
    assert "$" not in script.replace("$$", ""), (
        f"{service_name}: write shell variables as $$NAME in docker-compose.yml"
    )
    lexer = shlex.shlex(script.replace("$$", "$"), posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    argvs: list[list[str]] = []
    current: list[str] = []
    for token in [*lexer, ";"]:
        if token in {"|", "||", "&&", ";", "&"}:
            if current and current[0] == "bordermon":
                argvs.append([_expand(word, service_name) for word in current[1:]])
            current = []
        else:
            current.append(token)
    assert argvs, f"{service_name}: its script runs no bordermon command"
    return argvs


def host_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: repo-relative host path -> container path."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = str(volume["source"]), str(volume["target"])
        else:
            source, target = str(volume).split(":")[:2]
            if not source.startswith((".", "/")):
                continue  # a named volume
        mounts[str(PurePosixPath(source.removeprefix("./")))] = target
    return mounts


def container_path_to_repo(service: dict[str, Any], path: str) -> Path | None:
    """The repo file a container path shows through a bind mount, if any."""
    for source, target in host_mounts(service).items():
        relative = PurePosixPath(path)
        if relative == PurePosixPath(target) or PurePosixPath(target) in relative.parents:
            return REPO / source / relative.relative_to(target)
    return None


def port_mappings(service: dict[str, Any]) -> dict[str, str]:
    """Published ports: host port -> container port ("[ip:]host:container[/proto]")."""
    mappings = {}
    for entry in service.get("ports") or []:
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            mappings[parts[-2]] = parts[-1]
    return mappings


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / DOCKERFILE).read_text("utf-8").replace("\\\n", " ")
    instructions = []
    for raw_line in text.splitlines():
        stripped = raw_line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _exec_form(keyword: str) -> list[str]:
    values = [rest for key, rest in dockerfile_instructions() if key == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{keyword} in exec form (a JSON array)"
    return [str(word) for word in parsed]


def dockerfile_entrypoint() -> list[str]:
    return _exec_form("ENTRYPOINT")


def dockerfile_cmd() -> list[str]:
    return _exec_form("CMD")


def settings_of(service_name: str) -> Settings:
    return Settings.load(environ=environment(SERVICES[service_name]))


def strict_parser() -> argparse.ArgumentParser:
    """`bordermon`'s parser without abbreviations: a file must spell options in full (argparse
    would take `--rat` for `--rate`, and a new option could make that ambiguous later)."""
    parser = build_parser()

    def no_abbreviations(node: argparse.ArgumentParser) -> None:
        node.allow_abbrev = False
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    no_abbreviations(sub)

    no_abbreviations(parser)
    return parser


def parse(argv: list[str], where: str) -> argparse.Namespace:
    try:
        return strict_parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"{where}: `bordermon {' '.join(argv)}` does not parse (exit {error})")


def command_parser_choices() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


# --- the services -------------------------------------------------------------------------


def test_the_stack_has_its_services() -> None:
    expected = {"kafka", "redis", "topics", "worker", "scanner-feed", "prometheus", "grafana"}
    assert expected <= set(SERVICES)
    assert {"topics", "worker", "scanner-feed"} <= set(bordermon_services())
    assert "version" not in COMPOSE, "the Compose Specification has no version key"


def test_images_are_the_official_ones_and_pinned() -> None:
    images = {name: service.get("image", "") for name, service in SERVICES.items()}
    pom = (REPO / "deploy" / "local" / "pom.xml").read_text("utf-8")
    kafka_version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert kafka_version, "deploy/local/pom.xml names the Kafka version"
    assert images["kafka"] == f"apache/kafka:{kafka_version.group(1)}", "same Kafka as local"
    assert kafka_version.group(1).startswith("4.")
    assert images["redis"] == "redis:7"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", images["prometheus"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", images["grafana"])
    for name, service in SERVICES.items():
        assert "build" in service or ":" in images[name], f"{name}: pin a tag"
        assert not images[name].endswith(":latest"), name


def test_bordermon_services_build_from_the_dockerfile() -> None:
    for name, service in bordermon_services().items():
        assert service["build"]["context"] == ".", name
    dockerfile = REPO / DOCKERFILE
    assert dockerfile.is_file()
    instructions = dockerfile_instructions()
    assert ("FROM", "python:3.11-slim") in instructions
    assert dockerfile_entrypoint() == ["bordermon"]
    runs = " ".join(rest for key, rest in instructions if key == "RUN")
    assert re.search(r"pip install (\.|/src)", runs), "the image installs the package"
    users = [rest for key, rest in instructions if key == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the containers do not run as root"


def test_the_dockerignore_keeps_what_the_image_copies() -> None:
    """BuildKit reads deploy/docker/Dockerfile.dockerignore for this Dockerfile."""
    ignore = (REPO / f"{DOCKERFILE}.dockerignore").read_text("utf-8").splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything out, then what the image needs"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copies = [rest for key, rest in dockerfile_instructions() if key == "COPY"]
    assert copies
    for copy in copies:
        words = [w for w in copy.split() if not w.startswith("--")]
        for source in words[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repo"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by the dockerignore"
    for heavy in (".venv", "run", ".git", "deploy"):
        assert heavy not in allowed, f"{heavy} stays out of the build context"


def test_every_bordermon_variable_is_a_setting() -> None:
    used: dict[str, str] = {}
    for name, service in SERVICES.items():
        for variable in environment(service):
            if variable.startswith("BORDERMON_"):
                used[variable] = name
        text = json.dumps([service.get("command"), service.get("entrypoint")])
        for variable in re.findall(r"BORDERMON_\w+", text):
            used[variable] = name
    unknown = {
        variable: name for variable, name in used.items() if variable not in SETTINGS_VARIABLES
    }
    assert not unknown, f"not settings (bordermon.settings.SETTING_NAMES): {unknown}"
    assert {"BORDERMON_KAFKA_BOOTSTRAP", "BORDERMON_REDIS_URL"} <= set(used)


def test_bordermon_settings_load_and_point_at_the_compose_services() -> None:
    kafka_env = environment(SERVICES["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in bordermon_services():
        settings = settings_of(name)
        for server in settings.kafka_bootstrap.split(","):
            assert any(listener.endswith(f"//{server}") for listener in advertised), (
                f"{name}: {server} is not an advertised Kafka listener"
            )
        host, _, port = settings.redis_url.removeprefix("redis://").partition("/")[0].partition(":")
        assert host == "redis" and port == "6379", f"{name}: Redis at {settings.redis_url}"


def test_every_command_exists_and_its_flags_parse() -> None:
    choices = command_parser_choices()
    seen: set[str] = set()
    for name, service in bordermon_services().items():
        for argv in bordermon_commands(name, service):
            assert argv and argv[0] in choices, f"{name}: `bordermon {argv[:1]}` is no command"
            args = parse(argv, name)
            if argv[0] == "simulate":
                from bordermon.cli.simulate import _spec_from_args

                _spec_from_args(args)  # its values, which `run` parses
            seen.add(argv[0])
    assert {"topics", "worker", "simulate", "publish"} <= seen


def test_the_scanner_feed_pipes_a_paced_simulation_into_publish_raw() -> None:
    service = SERVICES["scanner-feed"]
    assert as_list(service["entrypoint"])[:3] == ["/bin/bash", "-o", "pipefail"]
    simulate, publish = bordermon_commands("scanner-feed", service)
    assert simulate[0] == "simulate" and publish[0] == "publish"
    args = parse(simulate, "scanner-feed")
    assert float(args.rate) == 50
    publish_args = parse(publish, "scanner-feed")
    assert publish_args.raw and publish_args.file == "-"


def test_the_topics_service_applies_the_declared_topics() -> None:
    service = SERVICES["topics"]
    (argv,) = bordermon_commands("topics", service)
    args = parse(argv, "topics")
    assert argv[:2] == ["topics", "apply"] and not args.check, "it creates, not only checks"
    # The declarations it reads: --file through its mount, else the image's copy.
    if args.file:
        declarations_file = container_path_to_repo(service, args.file)
        assert declarations_file is not None, f"{args.file} is not mounted from the checkout"
    else:
        assert ("COPY", "topics/ /app/topics/") in dockerfile_instructions()
        declarations_file = REPO / "topics" / "topics.toml"
    assert declarations_file == REPO / "topics" / "topics.toml"
    declared = {d.role: d.name for d in load_declarations(declarations_file)}
    defaults = Settings()
    assert declared == {
        "crossings": defaults.crossings_topic,
        "flags": defaults.flags_topic,
        "dead_letter": defaults.dead_letter_topic,
        "links": defaults.links_topic,
    }
    # Every bordermon service uses those very names (no override of one side only).
    for name in bordermon_services():
        settings = settings_of(name)
        assert (settings.crossings_topic, settings.flags_topic, settings.dead_letter_topic) == (
            declared["crossings"],
            declared["flags"],
            declared["dead_letter"],
        ), name
    assert not any(key.startswith("setting_") and value for key, value in vars(args).items()), (
        "no topic name or bootstrap override on the command line"
    )


def test_two_workers_expose_their_metrics_port() -> None:
    service = SERVICES["worker"]
    assert service.get("deploy", {}).get("replicas") == 2
    (argv,) = bordermon_commands("worker", service)
    assert argv == ["worker"]
    port = settings_of("worker").metrics_port
    assert port != 0, "metrics enabled"
    exposed = {str(p).split(":")[-1].split("/")[0] for p in service.get("expose", [])}
    published = {str(p).split(":")[-1].split("/")[0] for p in service.get("ports", [])}
    assert str(port) in exposed | published
    assert not any(":" in str(p) for p in service.get("ports", [])), (
        "a fixed host port cannot be published by 2 replicas"
    )
    assert f":{port}/metrics" in json.dumps(service["healthcheck"]["test"])


def test_prometheus_scrapes_the_workers_metrics_port_when_its_config_exists() -> None:
    """Compose side always; the scrape targets too once deploy/prometheus/prometheus.yml exists
    (its absence fails test_mounted_host_paths_exist)."""
    port = settings_of("worker").metrics_port
    prometheus = SERVICES["prometheus"]
    config = container_path_to_repo(prometheus, "/etc/prometheus/prometheus.yml")
    assert config == PROMETHEUS_CONFIG, "the default config path shows the repo's file"
    assert depends_on(prometheus).get("worker") == "service_started"
    if not PROMETHEUS_CONFIG.exists():
        return
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text("utf-8"))["scrape_configs"]
    targets: set[tuple[str, int]] = set()
    for job in scrape:
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, target_port = str(target).rpartition(":")
                targets.add((host, int(target_port)))
        for dns in job.get("dns_sd_configs", []):
            targets.update((name, int(dns["port"])) for name in dns.get("names", []))
    assert ("worker", port) in targets, f"no job scrapes worker:{port}; found {targets}"


def test_kafka_is_a_single_kraft_node_with_a_network_and_a_host_listener() -> None:
    kafka = environment(SERVICES["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(
        item.split("://", 1) for item in kafka["KAFKA_LISTENERS"].split(",")
    )  # name -> host:port
    advertised = dict(
        item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    protocols = dict(
        item.split(":", 1) for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    voter_port = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].rpartition(":")[2]
    assert listeners[controller].endswith(f":{voter_port}")
    assert advertised[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    # The host listener is published on the port it advertises.
    host_listeners = {n: a for n, a in advertised.items() if a.startswith("localhost:")}
    assert host_listeners, "a listener for clients on the host"
    published = port_mappings(SERVICES["kafka"])
    for name, address in host_listeners.items():
        host_port = address.rpartition(":")[2]
        assert published.get(host_port) == listeners[name].rpartition(":")[2], (name, published)
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from topics.toml"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"])
    assert str(kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"


def test_kafka_and_redis_have_healthchecks() -> None:
    kafka_check = SERVICES["kafka"]["healthcheck"]["test"]
    text = " ".join(as_list(kafka_check))
    assert re.search(
        r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh --bootstrap-server localhost:9092",
        text,
    )
    assert as_list(kafka_check)[0] in {"CMD", "CMD-SHELL"}
    assert as_list(SERVICES["redis"]["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]
    redis_command = as_list(SERVICES["redis"]["command"])
    assert redis_command[0] == "redis-server"
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    # Saved is durable before the offsets are committed (SPEC §6 across a Redis crash).
    assert redis_command[redis_command.index("--appendfsync") + 1] == "always"


def test_start_order_follows_health_and_completion() -> None:
    expected = {
        "topics": {"kafka": "service_healthy"},
        "worker": {"topics": "service_completed_successfully", "redis": "service_healthy"},
        "scanner-feed": {"topics": "service_completed_successfully"},
    }
    for name, conditions in expected.items():
        actual = depends_on(SERVICES[name])
        for dependency, condition in conditions.items():
            assert actual.get(dependency) == condition, f"{name} -> {dependency}"
    for name, service in SERVICES.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
            if condition == "service_completed_successfully":
                assert SERVICES[dependency].get("restart", "no") == "no", (
                    f"{dependency} is a one-shot: it must not restart"
                )


def test_named_volumes_are_declared_and_data_is_kept() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, f"{name}: {volume}"
    data = {
        "kafka": "/var/lib/kafka/data",
        "redis": "/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, path in data.items():
        targets = [str(v).split(":")[1] for v in SERVICES[name]["volumes"] if isinstance(v, str)]
        assert path in targets, f"{name} keeps its data in a volume at {path}"
    assert environment(SERVICES["kafka"])["KAFKA_LOG_DIRS"] == data["kafka"]


def test_mounted_host_paths_exist() -> None:
    mounts = {
        (name, source): target
        for name, service in SERVICES.items()
        for source, target in host_mounts(service).items()
    }
    expected = {
        ("prometheus", "deploy/prometheus"),
        ("grafana", "deploy/grafana/provisioning"),
        ("grafana", "deploy/grafana/dashboards"),
        ("topics", "topics"),
    }
    assert expected <= set(mounts)
    assert mounts[("grafana", "deploy/grafana/provisioning")] == "/etc/grafana/provisioning"
    missing = sorted(source for _, source in mounts if not (REPO / source).exists())
    assert not missing, f"docker-compose.yml mounts paths the repo lacks: {missing}"
    assert PROMETHEUS_CONFIG.is_file()


# --- docker-compose.secure.yml: the same pipeline, secure ---------------------------------------
#
# The secure stack's file is checked like the plaintext one and against what makes it secure:
# the secure local stack's Kafka properties (deploy/local/server-secure.properties.template),
# the ACLs (topics/acls.toml) each principal needs for what its service does, and the secrets
# (made by deploy/docker/secure-secrets.sh into a volume; no password in the file; each service
# mounts only its own folder, read-only).

SECURE_FILE = REPO / "docker-compose.secure.yml"
SECURE: dict[str, Any] = yaml.safe_load(SECURE_FILE.read_text("utf-8"))
SECURE_SERVICES: dict[str, dict[str, Any]] = SECURE["services"]
SECURE_TEMPLATE = REPO / "deploy" / "local" / "server-secure.properties.template"
SECRETS_SCRIPT = REPO / "deploy" / "docker" / "secure-secrets.sh"
KAFKA_START_SCRIPT = REPO / "deploy" / "docker" / "kafka-secure-start.sh"
CLIENT_SECRETS = "/run/secrets/bordermon"
KAFKA_CONFIG_DIR = "/mnt/shared/config"
"""Where the apache/kafka image reads a mounted server.properties (its "file input")."""
PRINCIPALS = {
    "topics": "admin",
    "worker": "worker",
    "scanner-feed": "scanner",
    "flags": "subscriber",
}
"""The Kafka user of each bordermon client service of the secure stack."""


def secure_clients() -> dict[str, dict[str, Any]]:
    """The bordermon services of the secure file that run `bordermon` (not the secrets tool)."""
    return {
        name: service
        for name, service in SECURE_SERVICES.items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == DOCKERFILE
        and name != "secrets"
    }


def secret_mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mounts of the `secrets` volume: container path -> the long-syntax entry."""
    mounts: dict[str, dict[str, Any]] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("source") == "secrets":
            mounts[str(volume["target"])] = volume
        elif isinstance(volume, str) and volume.split(":")[0] == "secrets":
            mounts[volume.split(":")[1]] = {"target": volume.split(":")[1], "short": volume}
    return mounts


def in_secret_mount(service: dict[str, Any], path: str) -> dict[str, Any] | None:
    for target, mount in secret_mounts(service).items():
        if PurePosixPath(target) in PurePosixPath(path).parents:
            return mount
    return None


def secure_settings(name: str, tmp_path: Path) -> Settings:
    """Settings of a secure client service, its mounted secret files replaced by local ones."""
    env = environment(SECURE_SERVICES[name])
    local = tmp_path / name
    local.mkdir(parents=True, exist_ok=True)
    for file in ("kafka.password", "redis.password", "ca.pem"):
        path = local / file
        path.write_text("not-a-real-secret\n")
        path.chmod(0o600)
    env = {key: value.replace(CLIENT_SECRETS, str(local)) for key, value in env.items()}
    return Settings.load(environ=env)


def kafka_properties_from_env(env: dict[str, str]) -> dict[str, str]:
    """KAFKA_* variables as the apache/kafka image turns them into server.properties lines (and
    kafka-secure-start.sh for the format); compose has already turned `$$` into `$`."""
    excluded = {"KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS"}
    properties = {}
    for name, value in env.items():
        if name.startswith("KAFKA_") and name not in excluded:
            key = name.removeprefix("KAFKA_").lower().replace("_", ".")
            key = key.replace("...", "-").replace("..", "_")
            properties[key] = value.replace("$$", "$")
    return properties


def template_properties() -> dict[str, str]:
    """The secure template's keys and values (its `$$` is string.Template's escaped `$`)."""
    properties = {}
    for line in SECURE_TEMPLATE.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip().replace("$$", "$")
    return properties


def test_the_secure_stack_has_the_same_services_and_a_project_of_its_own() -> None:
    assert set(SERVICES) | {"secrets"} == set(SECURE_SERVICES)
    assert set(secure_clients()) == set(PRINCIPALS)
    assert SECURE["name"] != COMPOSE["name"], "its own volumes: never the plaintext Kafka storage"
    for name, service in SECURE_SERVICES.items():
        if name in SERVICES and "image" in SERVICES[name]:
            assert service["image"] == SERVICES[name]["image"], f"{name}: the same image"
    declared = set(SECURE.get("volumes") or {})
    assert {"secrets", "kafka-data", "redis-data"} <= declared
    for name, service in SECURE_SERVICES.items():
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            if isinstance(volume, dict) and volume.get("type") == "bind":
                continue
            if not str(source).startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    for name, service in SECURE_SERVICES.items():
        for source in host_mounts(service):
            assert (REPO / source).exists(), f"{name} mounts {source}, which the repo lacks"


def test_secure_bordermon_variables_are_settings() -> None:
    for name, service in SECURE_SERVICES.items():
        for variable in environment(service):
            if variable.startswith("BORDERMON_"):
                assert variable in SETTINGS_VARIABLES, f"{name}: {variable} is not a setting"


def test_secure_clients_run_the_same_commands_and_they_parse() -> None:
    for name, service in secure_clients().items():
        argvs = bordermon_commands(name, service)
        for argv in argvs:
            parse(argv, f"{SECURE_FILE.name} {name}")
        assert argvs == bordermon_commands(name, SERVICES[name]), f"{name}: same as plaintext"


def test_each_secure_client_logs_in_as_its_own_principal(tmp_path: Path) -> None:
    advertised = environment(SECURE_SERVICES["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    protocols = dict(
        item.split(":", 1)
        for item in environment(SECURE_SERVICES["kafka"])[
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
        ].split(",")
    )
    for name, principal in PRINCIPALS.items():
        service = SECURE_SERVICES[name]
        env = environment(service)
        settings = secure_settings(name, tmp_path)
        assert settings.kafka_security_protocol == "SASL_SSL", name
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512", name
        assert settings.kafka_username == principal, name
        (listener,) = [a for a in advertised if a.endswith(f"//{settings.kafka_bootstrap}")]
        assert protocols[listener.split("://")[0]] == "SASL_SSL", f"{name}: {listener}"
        # Its files are in its own folder of the secrets volume, mounted read-only.
        (mount,) = secret_mounts(service).values()
        assert mount["target"] == CLIENT_SECRETS, name
        assert mount.get("read_only") is True, f"{name}: secrets mounted read-only"
        assert mount.get("volume", {}).get("subpath") == f"client-{principal}", (
            f"{name} mounts only the secrets of {principal}"
        )
        for setting in ("kafka_password_file", "kafka_ca_file"):
            path = env[f"BORDERMON_{setting.upper()}"]
            assert in_secret_mount(service, path) is mount, f"{name}: {setting} {path}"
        # Only the workers use Redis: as `bordermon`, over TLS, the password from a file.
        if name == "worker":
            assert settings.redis_url.startswith("rediss://bordermon@redis:6379/"), name
            assert f"ssl_ca_certs={CLIENT_SECRETS}/ca.pem" in env["BORDERMON_REDIS_URL"]
            assert in_secret_mount(service, env["BORDERMON_REDIS_PASSWORD_FILE"]) is mount
            assert settings.redis_password is not None
        else:
            assert "BORDERMON_REDIS_PASSWORD_FILE" not in env, f"{name} needs no Redis"


def _allowed(acls: list[Any], principal: str, resource: str, name: str, operation: str) -> bool:
    for acl in acls:
        if acl.principal != f"User:{principal}" or acl.resource != resource:
            continue
        if acl.operation not in (operation, "ALL"):
            continue
        if acl.name == name if acl.pattern == "LITERAL" else name.startswith(acl.name):
            return True
    return False


def test_the_acls_allow_each_principal_what_its_service_does(tmp_path: Path) -> None:
    from bordermon.admin.acls import load_acls

    kafka = kafka_properties_from_env(environment(SECURE_SERVICES["kafka"]))
    super_users = kafka["super.users"].split(";")
    names = {d.role: d.name for d in load_declarations(REPO / "topics" / "topics.toml")}

    def acls_for(service: str) -> list[Any]:
        settings = secure_settings(service, tmp_path / f"acls-{service}")
        return load_acls(
            REPO / "topics" / "acls.toml", names, {"consumer_group": settings.consumer_group}
        )

    # topics: creates topics and ACLs, which only a super user may.
    assert f"User:{PRINCIPALS['topics']}" in super_users
    # The scanner feed publishes crossings, and may do nothing else.
    acls = acls_for("scanner-feed")
    _simulate, publish = bordermon_commands("scanner-feed", SECURE_SERVICES["scanner-feed"])
    assert publish[0] == "publish"
    scanner = {(a.resource, a.name, a.operation) for a in acls if a.principal == "User:scanner"}
    assert scanner == {("TOPIC", names["crossings"], "WRITE")}
    # The workers: read crossings and links, write flags, links and dead letters, in their group.
    acls = acls_for("worker")
    group = secure_settings("worker", tmp_path / "acls-worker").consumer_group
    for resource, name, operation in [
        ("TOPIC", names["crossings"], "READ"),
        ("TOPIC", names["links"], "READ"),
        ("TOPIC", names["links"], "WRITE"),
        ("TOPIC", names["flags"], "WRITE"),
        ("TOPIC", names["dead_letter"], "WRITE"),
        ("GROUP", group, "READ"),
    ]:
        assert _allowed(acls, "worker", resource, name, operation), (resource, name, operation)
    # flags: reads the flags topic in the group `bordermon flags` picks (alerts/subscriber.py:
    # --group, else <consumer_group>.flags-cli, else with --from-beginning bordermon-flags-<hex>).
    acls = acls_for("flags")
    (argv,) = bordermon_commands("flags", SECURE_SERVICES["flags"])
    args = parse(argv, "flags")
    consumer_group = secure_settings("flags", tmp_path / "acls-flags").consumer_group
    if args.group:
        flags_group = args.group
    elif not args.from_beginning:
        flags_group = consumer_group + ".flags-cli"
    else:
        flags_group = "bordermon-flags-0123456789ab"
    assert _allowed(acls, "subscriber", "TOPIC", names["flags"], "READ")
    assert _allowed(acls, "subscriber", "GROUP", flags_group, "READ"), flags_group
    assert not _allowed(acls, "subscriber", "TOPIC", names["crossings"], "READ")
    # Nobody but a super user creates, deletes or alters anything.
    for acl in acls:
        assert acl.operation in {"READ", "WRITE", "DESCRIBE"}, acl


def test_secure_kafka_has_the_security_of_the_secure_local_stack() -> None:
    service = SECURE_SERVICES["kafka"]
    kafka = kafka_properties_from_env(environment(service))
    template = template_properties()
    secret_keys = {key for key, value in template.items() if "_password}" in value}
    assert secret_keys == {
        "ssl.keystore.password",
        "ssl.key.password",
        "listener.name.client.scram-sha-512.sasl.jaas.config",
    }
    placed = {"listeners", "advertised.listeners", "listener.security.protocol.map"}
    for key, value in template.items():
        if key in secret_keys or key in placed:
            continue
        if "${tls_dir}" in value:
            # Locations: the same files, in the mounted folder secure-secrets.sh fills.
            assert kafka[key] == f"{KAFKA_CONFIG_DIR}/{PurePosixPath(value).name}", key
            assert in_secret_mount(service, kafka[key]) is not None, key
            continue
        assert kafka.get(key) == value, f"{key}: {kafka.get(key)!r}, template {value!r}"
    # The listeners: the template's CLIENT and CONTROLLER, plus HOST for clients on the host.
    template_protocols = dict(
        item.split(":") for item in template["listener.security.protocol.map"].split(",")
    )
    protocols = dict(item.split(":") for item in kafka["listener.security.protocol.map"].split(","))
    assert protocols == {**template_protocols, "HOST": "SASL_SSL"}
    assert not any("SSL" in name or "SASL" in name for name in protocols), (
        "listener names with SSL/SASL_ make the image's configure step demand its own variables"
    )
    assert (
        kafka["listener.name.host.scram-sha-512.sasl.jaas.config"]
        .rstrip()
        .endswith("ScramLoginModule required;")
    ), "HOST checks SCRAM logins (no credentials of its own)"
    # The secret keys are in no variable: secure-secrets.sh writes them to the mounted file.
    script = SECRETS_SCRIPT.read_text("utf-8")
    for key in secret_keys:
        assert key not in kafka, f"{key} holds a password: not in the compose file"
        assert f"{key}=" in script, f"secure-secrets.sh writes {key}"
    config_mount = secret_mounts(service)[KAFKA_CONFIG_DIR]
    assert config_mount.get("read_only") is True
    assert config_mount["volume"]["subpath"] == "kafka"
    # Users at format time: the start script formats with the hashes secure-secrets.sh wrote.
    entrypoint = as_list(service["entrypoint"])
    start = container_path_to_repo(service, entrypoint[-1])
    assert start == KAFKA_START_SCRIPT
    start_text = KAFKA_START_SCRIPT.read_text("utf-8")
    assert f"CONFIG_DIR={KAFKA_CONFIG_DIR}\n" in start_text
    assert "--add-scram" in start_text and '"$CONFIG_DIR/scram-args"' in start_text
    assert "exec /etc/kafka/docker/run" in start_text
    assert "kafka_format_args" in script and "scram-args" in script
    health = " ".join(as_list(service["healthcheck"]["test"]))
    assert f"--command-config {KAFKA_CONFIG_DIR}/admin-client.properties" in health
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", environment(service)["CLUSTER_ID"])


def test_secure_redis_is_tls_only_with_the_acl_file() -> None:
    service = SECURE_SERVICES["redis"]
    command = as_list(service["command"])
    assert command[0] == "redis-server"

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert option("--port") == "0", "no plaintext port"
    assert option("--tls-port") == "6379"
    assert option("--appendonly") == "yes" and option("--appendfsync") == "always"
    for name in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file", "--aclfile"):
        mount = in_secret_mount(service, option(name))
        assert mount is not None and mount.get("read_only") is True, name
        assert mount["volume"]["subpath"] == "redis"
    assert "redis_acl" in SECRETS_SCRIPT.read_text("utf-8"), "bordermon.admin.credentials' ACL file"
    assert "--tls" in as_list(service["healthcheck"]["test"])[1]


def test_no_password_in_the_secure_compose_file() -> None:
    text = SECURE_FILE.read_text("utf-8")
    assert not re.search(r"password\s*=\s*\"?[^\s\"$]", text, re.IGNORECASE)
    assert not re.search(r"rediss?://[^@/\s:]+:[^@/\s]+@", text), "no password in a URL"
    assert not re.search(r"requirepass|--pass\b|>\w", text.replace(">-", ""))
    for name, service in SECURE_SERVICES.items():
        for variable, value in environment(service).items():
            if re.search(r"PASSWORD|SECRET|CREDENTIAL", variable):
                assert variable.endswith("_FILE"), f"{name}: {variable} holds a secret"
                assert in_secret_mount(service, value) is not None, f"{name}: {variable}"


def test_secret_files_are_mounted_read_only_and_made_by_the_secrets_service() -> None:
    secrets = SECURE_SERVICES["secrets"]
    assert secrets.get("restart") == "no" and secrets.get("user") == "root"
    entrypoint = as_list(secrets["entrypoint"])
    assert container_path_to_repo(secrets, entrypoint[-1]) == SECRETS_SCRIPT
    assert secret_mounts(secrets), "the secrets service writes the volume"
    for name, service in SECURE_SERVICES.items():
        if name == "secrets":
            continue
        for target, mount in secret_mounts(service).items():
            assert mount.get("read_only") is True, f"{name}: {target} read-only"
            assert mount.get("volume", {}).get("subpath"), f"{name}: only its own folder"
        if secret_mounts(service):
            assert depends_on(service).get("secrets") == "service_completed_successfully" or any(
                depends_on(SECURE_SERVICES[d]).get("secrets") == "service_completed_successfully"
                for d in depends_on(service)
            ), f"{name} starts after the secrets exist"
    # The folders the services mount are the ones the script fills, owned by their readers.
    script = SECRETS_SCRIPT.read_text("utf-8")
    uid = re.search(r"--uid (\d+)", (REPO / DOCKERFILE).read_text("utf-8"))
    assert uid and f"CLIENT_UID=${{CLIENT_UID:-{uid.group(1)}}}" in script
    assert "umask 077" in script and "chmod 700" in script
    # The rotate/add-user step runs `bordermon users set-password` as admin: it parses.
    parse(["users", "set-password", "scanner", "--password-file", "/secrets/x"], "secrets")
    assert environment(secrets)["BORDERMON_KAFKA_USERNAME"] == "admin"


def test_the_secure_scripts_are_valid_bash() -> None:
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    for script in (SECRETS_SCRIPT, KAFKA_START_SCRIPT):
        result = subprocess.run(
            [bash, "-n", str(script)], check=False, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_secure_start_order() -> None:
    expected = {
        "kafka": {"secrets": "service_completed_successfully"},
        "redis": {"secrets": "service_completed_successfully"},
        "topics": {"kafka": "service_healthy"},
        "worker": {"topics": "service_completed_successfully", "redis": "service_healthy"},
        "scanner-feed": {"topics": "service_completed_successfully"},
        "flags": {"topics": "service_completed_successfully"},
    }
    for name, conditions in expected.items():
        actual = depends_on(SECURE_SERVICES[name])
        for dependency, condition in conditions.items():
            assert actual.get(dependency) == condition, f"{name} -> {dependency}"
    for name, service in SECURE_SERVICES.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in SECURE_SERVICES and dependency != name, f"{name}: {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in SECURE_SERVICES[dependency], dependency
            if condition == "service_completed_successfully":
                assert SECURE_SERVICES[dependency].get("restart", "no") == "no", dependency


def test_the_readme_says_how_to_run_secure_add_a_scanner_and_rotate_in_docker() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.partition("### Secure, with Docker")[2].partition("\n## ")[0]
    assert section, "README has a 'Secure, with Docker' section"
    script = SECRETS_SCRIPT.read_text("utf-8")
    assert f"docker compose -f {SECURE_FILE.name} up" in section
    for action in ("add-user", "rotate"):
        assert f"run --rm secrets {action} " in section, action
        assert re.search(rf"^\s*[\w| -]*\b{action}\b[\w| -]*\)$", script, re.MULTILINE), (
            f"the script does {action}"
        )
    for name in re.findall(r"\.yml restart ([\w -]+)", section):
        for service in name.split():
            assert service in SECURE_SERVICES, f"README restarts unknown service {service}"


def test_the_image_has_the_openssl_command_the_secrets_service_runs() -> None:
    # python:*-slim ships libssl but not the `openssl` command that secure-secrets.sh calls.
    runs = [rest for key, rest in dockerfile_instructions() if key == "RUN"]
    assert any("install" in run and "openssl" in run for run in runs), runs
