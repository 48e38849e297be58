#!/usr/bin/env python3
"""Checks that the deployment files fit together, which no schema can tell.

Run by scripts/validate-deploy.sh (needs PyYAML). Each check prints one line; the exit status
is 1 when any fails. With --authwatch BIN, every authwatch configuration is also loaded by
`BIN check-config` with the environment its deployment gives it (Compose services, Kubernetes
containers, the systemd unit), with dummy keys and a dummy secret file. check-config only
parses and validates: it never probes anything.

  Compose: the sidecar's network_mode names a service; every Prometheus target is an authwatch
  (directly or through the namespace it joins), has a `vantage` label and job "authwatch" (what
  the alert rules match); bind-mount sources exist; Prometheus's config and rule files resolve
  inside its mounts to the files in the repository; Grafana's mounts are where its provisioning
  expects them and its datasource is a service; secrets come from files.
  Kubernetes: Services select pods and name their ports; the ServiceMonitor selects the
  Services, their metrics port and their `vantage` label, and sets job="authwatch"; every
  authwatch container mounts its config file and secret where its flags and env say, runs as
  the image's user with a read-only root filesystem, and probes ports it has.
  systemd: the credential and config paths of the unit.
"""

from __future__ import annotations

import argparse
import base64
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DUMMY_PK = "pk_test_" + base64.b64encode(b"clerk.example.com$").decode().rstrip("=")
DUMMY_SK = "sk_test_validation_only"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

failures: list[str] = []


def check(ok: bool, what: str) -> bool:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    for a, b in zip(args, args[1:]):
        if a == f"--{name}":
            return b
    return None


def image_uid() -> str:
    users = [
        line.split()[1]
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.startswith("USER ")
    ]
    return users[-1].split(":")[0] if users else ""


class ConfigRunner:
    """Runs `authwatch check-config` on a file with a given environment."""

    def __init__(self, binary: str | None, tmp: Path):
        self.binary = binary
        self.secret = tmp / "clerk_secret_key"
        self.secret.write_text(DUMMY_SK + "\n")

    def run(self, what: str, config: Path, env: dict[str, str]) -> None:
        if not self.binary:
            return
        full = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        full.update(env)
        r = subprocess.run(
            [self.binary, "check-config", "--config.file", str(config)],
            env=full,
            capture_output=True,
            text=True,
            check=False,
        )
        out = (r.stdout + r.stderr).strip().replace(str(config), config.name)
        check(r.returncode == 0, f"{what}: check-config: {out}")


# ---------------------------------------------------------------- Compose


def compose(runner: ConfigRunner) -> None:
    path = DEPLOY / "docker-compose.yml"
    doc = yaml.safe_load(path.read_text())
    services: dict = doc["services"]
    secrets: dict = doc.get("secrets", {})

    def mounts(svc: dict) -> list[tuple[Path, str]]:
        out = []
        for v in svc.get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith((".", "/")):
                out.append(((DEPLOY / src).resolve(), dst))
        return out

    def host_path(svc: dict, container_path: str) -> Path | None:
        """The repository file a container path of `svc` is bind-mounted from."""
        best = None
        for src, dst in mounts(svc):
            if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
                if best is None or len(dst) > len(best[1]):
                    best = (src, dst)
        if best is None:
            return None
        rest = container_path[len(best[1]) :].lstrip("/")
        return best[0] / rest if rest else best[0]

    for name, svc in services.items():
        for src, _ in mounts(svc):
            check(src.exists(), f"compose {name}: bind-mount source {src.relative_to(ROOT)} exists")
    for name, s in secrets.items():
        check("file" in s and "environment" not in s, f"compose secret {name} comes from a file")
        gi = (DEPLOY / s["file"]).parent / ".gitignore"
        check(gi.exists() and "*" in gi.read_text().split(), f"compose secret {name}: its directory is git-ignored")
    for name, svc in services.items():
        env = svc.get("environment", {})
        for k, v in env.items():
            if re.search(r"SECRET|PASSWORD|TOKEN", k) and not k.endswith("__FILE") and not k.endswith("_FILE"):
                check(False, f"compose {name}: {k} must be a file (secrets:), not inline")

    authwatch = {n: s for n, s in services.items() if "authwatch" in str(s.get("image", ""))}
    check(len(authwatch) >= 2, f"compose: authwatch services {sorted(authwatch)}")
    netns_of = {}
    for name, svc in authwatch.items():
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            target = mode.split(":", 1)[1]
            check(target in services, f"compose {name}: network_mode joins existing service {target}")
            check("ports" not in svc, f"compose {name}: no ports with network_mode {mode}")
            netns_of[target] = name
            published = [str(p) for p in services[target].get("ports", [])]
            check(any(p.endswith(":19868") for p in published), f"compose {target} publishes the sidecar's 19868")
        else:
            netns_of[name] = name
        args = svc.get("command", [])
        cfg = flag(args, "config.file")
        cfg_host = host_path(svc, cfg) if cfg else None
        if check(cfg_host is not None and cfg_host.is_file(), f"compose {name}: --config.file {cfg} is mounted from the repository"):
            env = {k: str(v) for k, v in svc.get("environment", {}).items()}
            secret_file = env.get("CLERK_SECRET_KEY_FILE", "")
            names = [s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])]
            check(
                secret_file.startswith("/run/secrets/") and secret_file.rsplit("/", 1)[1] in names,
                f"compose {name}: CLERK_SECRET_KEY_FILE={secret_file} is one of its secrets {names}",
            )
            # An unset `${VAR:-default}` is its default, as Compose interpolates it.
            env = {k: re.sub(r"^\$\{[A-Za-z0-9_]+:-([^}]*)\}$", r"\1", v) for k, v in env.items()}
            env["CLERK_PUBLISHABLE_KEY"] = DUMMY_PK
            env["CLERK_SECRET_KEY_FILE"] = str(runner.secret)
            runner.run(f"compose {name}", cfg_host, env)

    # Prometheus.
    prom = services["prometheus"]
    pcfg = flag(prom.get("command", []), "config.file") or "/etc/prometheus/prometheus.yml"
    pcfg_host = host_path(prom, pcfg)
    if check(pcfg_host is not None and pcfg_host.is_file(), f"compose prometheus: {pcfg} is mounted from {pcfg_host and pcfg_host.relative_to(ROOT)}"):
        pdoc = yaml.safe_load(pcfg_host.read_text())
        for rf in pdoc.get("rule_files", []):
            cpath = posixpath.normpath(posixpath.join(posixpath.dirname(pcfg), rf))
            hp = host_path(prom, cpath)
            check(hp is not None and hp.resolve() == ALERTS.resolve(), f"compose prometheus: rule file {rf} is {cpath} in the container = deploy/prometheus/alerts.yml")
        jobs = {j["job_name"]: j for j in pdoc["scrape_configs"]}
        check("authwatch" in jobs and 'job="authwatch"' in ALERTS.read_text(), "compose prometheus: job authwatch (the alert rules match job=\"authwatch\")")
        vantages = []
        scraped = set()
        for sc in jobs.get("authwatch", {}).get("static_configs", []):
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                v = sc.get("labels", {}).get("vantage")
                vantages.append(v)
                check(host in netns_of and port == "19868", f"compose prometheus: target {t} is authwatch service {netns_of.get(host)}")
                check(bool(v), f"compose prometheus: target {t} has vantage={v}")
                scraped.add(netns_of.get(host))
        check(len(set(vantages)) == len(vantages), f"compose prometheus: vantage labels are distinct {vantages}")
        check(scraped == set(authwatch), f"compose prometheus: every authwatch service is scraped {sorted(authwatch)}")
        for am in pdoc.get("alerting", {}).get("alertmanagers", []):
            for sc in am.get("static_configs", []):
                for t in sc["targets"]:
                    check(t.split(":")[0] in services, f"compose prometheus: alertmanager target {t} is a service")
    am = services["alertmanager"]
    acfg = flag(am.get("command", []), "config.file")
    ah = host_path(am, acfg) if acfg else None
    check(ah is not None and ah.resolve() == (DEPLOY / "compose" / "alertmanager.yml").resolve(), f"compose alertmanager: {acfg} is deploy/compose/alertmanager.yml")

    # Grafana: the provisioning files say where they and the dashboards are.
    gr = services["grafana"]
    prov = host_path(gr, "/etc/grafana/provisioning")
    check(prov is not None and prov.resolve() == (ROOT / "grafana" / "provisioning").resolve(), "compose grafana: grafana/provisioning at /etc/grafana/provisioning")
    for f in sorted((ROOT / "grafana" / "provisioning" / "dashboards").glob("*.yml")):
        for p in yaml.safe_load(f.read_text()).get("providers", []):
            want = p["options"]["path"]
            hp = host_path(gr, want)
            check(hp is not None and hp.resolve() == (ROOT / "grafana" / "dashboards").resolve() and any(hp.glob("*.json")), f"compose grafana: provider {p['name']} path {want} holds grafana/dashboards")
    for f in sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml")):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            host = re.sub(r"^\w+://", "", ds["url"]).split(":")[0].split("/")[0]
            check(host in services, f"compose grafana: datasource {ds['name']} at {ds['url']} is a service")


# ---------------------------------------------------------------- Kubernetes


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def kubernetes(runner: ConfigRunner, tmp: Path) -> None:
    docs = []
    for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        file_docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        if any(d["kind"] in ("ServiceMonitor", "PrometheusRule") for d in file_docs):
            check(len(file_docs) == 1, f"k8s {f.name}: a custom resource alone in its file (check-jsonschema reads one document)")
        docs += [(f.name, d) for d in file_docs]
    by_kind: dict[str, list] = {}
    for f, d in docs:
        by_kind.setdefault(d["kind"], []).append((f, d))
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    workloads = by_kind.get("Deployment", [])
    services = by_kind.get("Service", [])
    uid = image_uid()

    for f, svc in services:
        name = svc["metadata"]["name"]
        pods = [d for _, d in workloads if selects(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        check(len(pods) == 1, f"k8s {f}: Service {name} selects the pods of one Deployment")
        port_names = {p.get("name") for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort")
            check(not isinstance(tp, str) or tp in port_names, f"k8s {f}: Service {name} port {p['name']} targets container port {tp}")

    for f, sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"].get("matchLabels", {})
        chosen = [(sf, s) for sf, s in services if selects(sel, s["metadata"].get("labels", {}))]
        check(len(chosen) >= 2, f"k8s {f}: ServiceMonitor selects {[s['metadata']['name'] for _, s in chosen]}")
        for ep in sm["spec"]["endpoints"]:
            for sf, s in chosen:
                check(any(p.get("name") == ep["port"] for p in s["spec"]["ports"]), f"k8s {f}: Service {s['metadata']['name']} has port {ep['port']}")
            sets_job = any(r.get("targetLabel") == "job" and r.get("replacement") == "authwatch" for r in ep.get("relabelings", []))
            check(sets_job, f"k8s {f}: endpoint {ep['port']} sets job=\"authwatch\" (the alert rules match it)")
        for tl in sm["spec"].get("targetLabels", []):
            vals = [s["metadata"].get("labels", {}).get(tl) for _, s in chosen]
            check(all(vals) and len(set(vals)) == len(vals), f"k8s {f}: targetLabel {tl} is set and distinct on each Service: {vals}")

    for f, d in workloads:
        labels = d["spec"]["template"]["metadata"]["labels"]
        check(selects(d["spec"]["selector"]["matchLabels"], labels), f"k8s {f}: Deployment {d['metadata']['name']} selector matches its pod template")
        pod = d["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for v in vols.values():
            if "configMap" in v:
                check(v["configMap"]["name"] in configmaps, f"k8s {f}: volume {v['name']} uses ConfigMap {v['configMap']['name']} defined here")
        for c in pod["containers"]:
            if "authwatch" not in c["image"]:
                continue
            what = f"k8s {f}: {d['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False, f"{what}: read-only root, no privilege escalation")
            check((sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True and str(sc.get("runAsUser", psc.get("runAsUser"))) == uid, f"{what}: non-root as the image's user {uid}")
            check("memory" in c.get("resources", {}).get("limits", {}), f"{what}: memory limit")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                if probe in c:
                    check(c[probe]["httpGet"]["port"] in ports, f"{what}: {probe} {c[probe]['httpGet']['path']} on a port it has")
            check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy", f"{what}: liveness on /-/healthy")

            def mounted(path: str):
                for m in c.get("volumeMounts", []):
                    if path.startswith(m["mountPath"].rstrip("/") + "/"):
                        return vols[m["name"]], path[len(m["mountPath"]) :].lstrip("/")
                return None, None

            cfg = flag(c.get("args", []), "config.file")
            vol, key = mounted(cfg or "")
            cm = configmaps.get((vol or {}).get("configMap", {}).get("name"))
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            sk = env.get("CLERK_SECRET_KEY_FILE") or ""
            svol, skey = mounted(sk)
            items = [i["path"] for i in (svol or {}).get("secret", {}).get("items", [])]
            check(svol is not None and "secret" in svol and (skey in items or not items), f"{what}: CLERK_SECRET_KEY_FILE={sk} is in a Secret volume")
            if check(cm is not None and key in cm["data"], f"{what}: --config.file {cfg} is key {key} of a mounted ConfigMap"):
                cfile = tmp / f"{f}-{c['name']}-{key}"
                cfile.write_text(cm["data"][key])
                run_env = {k: v for k, v in env.items() if v is not None}
                run_env["CLERK_PUBLISHABLE_KEY"] = DUMMY_PK
                run_env["CLERK_SECRET_KEY_FILE"] = str(runner.secret)
                runner.run(what, cfile, run_env)


# ---------------------------------------------------------------- systemd


def systemd(runner: ConfigRunner) -> None:
    unit = (DEPLOY / "systemd" / "authwatch.service").read_text()
    keys: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    env = dict(e.split("=", 1) for e in keys.get("Environment", []))
    creds = [c.split(":", 1)[0] for c in keys.get("LoadCredential", [])]
    check(env.get("CLERK_SECRET_KEY_FILE", "").startswith("%d/") and env["CLERK_SECRET_KEY_FILE"][3:] in creds, f"systemd: CLERK_SECRET_KEY_FILE={env.get('CLERK_SECRET_KEY_FILE')} is a LoadCredential {creds}")
    argv = shlex.split(keys["ExecStart"][0])
    cfg = flag(argv, "config.file")
    check(cfg == "/etc/authwatch/authwatch.yml", f"systemd: --config.file {cfg} (installed from deploy/compose/authwatch.yml)")
    active_reload = [v for v in keys.get("ExecReload", [])]
    main_rs = (ROOT / "src" / "main.rs").read_text()
    check(not active_reload or "hangup" in main_rs, "systemd: no ExecReload sending SIGHUP unless authwatch handles SIGHUP")
    run_env = {k: v for k, v in env.items()}
    run_env["CLERK_PUBLISHABLE_KEY"] = DUMMY_PK
    run_env["CLERK_SECRET_KEY_FILE"] = str(runner.secret)
    runner.run("systemd", DEPLOY / "compose" / "authwatch.yml", run_env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authwatch", help="authwatch binary for check-config")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        runner = ConfigRunner(args.authwatch, tmp)
        compose(runner)
        kubernetes(runner, tmp)
        systemd(runner)
    if failures:
        print(f"{len(failures)} wiring check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
