{{/* Names, labels and secret helpers of the hub-addons chart. */}}

{{- define "addons.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "addons.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "addons.selectorLabels" -}}
app.kubernetes.io/name: {{ include "addons.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "addons.labels" -}}
{{ include "addons.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jupyterhub-outpost
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of the tunnel daemon's own pod (tunnel.mode=deployment). */}}
{{- define "addons.tunnelSelectorLabels" -}}
{{ include "addons.selectorLabels" . }}
app.kubernetes.io/component: tunnels
{{- end }}

{{- define "addons.secretName" -}}
{{- default (include "addons.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "addons.image" -}}
{{- printf "%s:%s" .Values.tunnel.image.repository (default .Chart.AppVersion .Values.tunnel.image.tag) }}
{{- end }}

{{/* Where the hub reaches the tunnel daemon's API. */}}
{{- define "addons.tunnelApiUrl" -}}
{{- if eq .Values.tunnel.mode "sidecar" }}
{{- printf "http://127.0.0.1:%d" (.Values.tunnel.apiPort | int) }}
{{- else }}
{{- printf "http://%s-tunnels.%s.svc:%d" (include "addons.fullname" .) .Release.Namespace (.Values.tunnel.apiPort | int) }}
{{- end }}
{{- end }}

{{/*
The data of the chart-managed Secret, base64-encoded. Generated values (the hub's SSH
key, the tunnel API and metrics tokens, Outpost passwords and flavor tokens) are made once: on
upgrade they are read back from the existing Secret with `lookup`. Values given in
values.yaml always win. Pinned host keys are never generated: they come from values
(or stay as they were).
*/}}
{{- define "addons.secretData" -}}
{{- $old := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "addons.fullname" .) }}
{{- if and $existing $existing.data }}
{{- $old = $existing.data }}
{{- end }}
{{- $data := dict }}
{{- if .Values.sshKey }}
{{- $_ := set $data "ssh-key" (.Values.sshKey | b64enc) }}
{{- else }}
{{- $_ := set $data "ssh-key" (index $old "ssh-key" | default (genPrivateKey "ed25519" | b64enc)) }}
{{- end }}
{{- if .Values.tunnel.apiToken }}
{{- $_ := set $data "tunnel-api-token" (.Values.tunnel.apiToken | b64enc) }}
{{- else }}
{{- $_ := set $data "tunnel-api-token" (index $old "tunnel-api-token" | default (randAlphaNum 48 | b64enc)) }}
{{- end }}
{{- if .Values.tunnel.metrics.token }}
{{- $_ := set $data "tunnel-metrics-token" (.Values.tunnel.metrics.token | b64enc) }}
{{- else }}
{{- $_ := set $data "tunnel-metrics-token" (index $old "tunnel-metrics-token" | default (randAlphaNum 48 | b64enc)) }}
{{- end }}
{{- range $name, $o := .Values.outposts }}
{{- $key := printf "outpost-%s-password" $name }}
{{- if $o.password }}
{{- $_ := set $data $key ($o.password | b64enc) }}
{{- else }}
{{- $_ := set $data $key (index $old $key | default (randAlphaNum 40 | b64enc)) }}
{{- end }}
{{- $key = printf "outpost-%s-flavors-token" $name }}
{{- if $o.flavorsToken }}
{{- $_ := set $data $key ($o.flavorsToken | b64enc) }}
{{- else }}
{{- $_ := set $data $key (index $old $key | default (randAlphaNum 48 | b64enc)) }}
{{- end }}
{{- $key = printf "outpost-%s-host-key" $name }}
{{- if and $o.ssh $o.ssh.hostKey }}
{{- $_ := set $data $key ($o.ssh.hostKey | b64enc) }}
{{- else }}
{{- $_ := set $data $key (index $old $key | default ("" | b64enc)) }}
{{- end }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/* The Outposts as the OutpostSpawner wants them, without any secret. */}}
{{- define "addons.outpostsJson" -}}
{{- $out := dict }}
{{- range $name, $o := .Values.outposts }}
{{- $entry := dict "url" $o.url "hub_name" $.Values.hubName "display_name" ($o.displayName | default $name) "direct" ($o.direct | default false) }}
{{- with $o.caCerts }}
{{- $_ := set $entry "ca_certs" . }}
{{- end }}
{{- with $o.description }}
{{- $_ := set $entry "description" . }}
{{- end }}
{{- with $o.hubApiUrl }}
{{- $_ := set $entry "hub_api_url" . }}
{{- end }}
{{- with $o.setuptunnelTargets }}
{{- $_ := set $entry "setuptunnel_targets" . }}
{{- end }}
{{- if and (not $o.direct) $o.ssh }}
{{- $_ := set $entry "ssh" (dict "host" $o.ssh.host "port" ($o.ssh.port | int) "user" $.Values.hubName) }}
{{- end }}
{{- $_ := set $out $name $entry }}
{{- end }}
{{- toPrettyJson $out }}
{{- end }}

{{/* The tunnel daemon's container, for the hub pod (sidecar) or its own pod. */}}
{{- define "addons.tunnelContainer" -}}
name: outpost-tunnels
image: {{ include "addons.image" . | quote }}
imagePullPolicy: {{ .Values.tunnel.image.pullPolicy }}
command:
  - jupyterhub-outpost
  - tunnels
  - --api-ip
  - {{ if eq .Values.tunnel.mode "sidecar" }}127.0.0.1{{ else }}0.0.0.0{{ end }}
  - --api-port
  - {{ .Values.tunnel.apiPort | quote }}
  - --forward-ip
  - 0.0.0.0
  - --ssh-key
  - /etc/outpost-hub/tunnel/ssh-key
  - --state-file
  - /srv/outpost-tunnels/forwards.json
  - --log-level
  - {{ .Values.tunnel.logLevel | quote }}
env:
  - name: OUTPOST_TUNNEL_API_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "addons.secretName" . }}
        key: tunnel-api-token
{{- if .Values.tunnel.metrics.enabled }}
  # Opens only GET /metrics (token or Bearer), for Prometheus.
  - name: OUTPOST_TUNNEL_METRICS_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "addons.secretName" . }}
        key: tunnel-metrics-token
{{- end }}
{{- if eq .Values.tunnel.mode "deployment" }}
ports:
  - name: api
    containerPort: {{ .Values.tunnel.apiPort }}
    protocol: TCP
readinessProbe:
  httpGet:
    path: /ping
    port: api
  periodSeconds: 5
livenessProbe:
  httpGet:
    path: /ping
    port: api
  periodSeconds: 10
  failureThreshold: 6
{{- end }}
resources:
  {{- toYaml .Values.tunnel.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.tunnel.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: outpost-tunnel-key
    mountPath: /etc/outpost-hub/tunnel
    readOnly: true
  - name: outpost-tunnels-state
    mountPath: /srv/outpost-tunnels
{{- end }}

{{/* The Python snippet the hub loads (hub.extraConfig); secrets are read from files. */}}
{{- define "addons.hubConfig" -}}
# Written by the hub-addons Helm chart (release {{ .Release.Name }}). Loaded by the hub
# through z2jh's hub.extraConfig; secrets are read from the mounted Secret
# {{ include "addons.secretName" . }}, never written here.
import json as _json
import os as _os

from jupyterhub_outpost.hub import outpost_handlers as _outpost_handlers

_secrets_dir = "/etc/outpost-hub/secrets"


def _outpost_secret(name):
    path = _os.path.join(_secrets_dir, name)
    if not _os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()


c.JupyterHub.spawner_class = "outpost"
# /hub/api/outpost/...: progress events, setuptunnel, flavor updates and the orphan report
c.JupyterHub.extra_handlers.extend(_outpost_handlers())
_outposts = _json.loads(r"""
{{ include "addons.outpostsJson" . }}
""")
for _name, _outpost in _outposts.items():
    _outpost["secret_file"] = _os.path.join(_secrets_dir, f"outpost-{_name}-password")
{{- if .Values.hubConfig.flavorUpdates }}
    # this Outpost's flavor usage reports are accepted with its own token only
    _outpost["flavors_update_token_file"] = _os.path.join(_secrets_dir, f"outpost-{_name}-flavors-token")
{{- end }}
    if "ssh" in _outpost:
        _host_key = _outpost_secret(f"outpost-{_name}-host-key")
        if _host_key:
            _outpost["ssh"]["host_key"] = _host_key
        else:
            # Never tunnel to an unpinned host key: without `ssh` the Outpost is unusable
            # for tunnelled servers until outposts.<name>.ssh.hostKey is set.
            print(f"hub-addons: Outpost {_name!r} has no pinned SSH host key; tunnels to it are disabled")
            del _outpost["ssh"]
c.OutpostSpawner.outposts = _outposts
c.OutpostSpawner.tunnel_api_url = {{ include "addons.tunnelApiUrl" . | quote }}
c.OutpostSpawner.tunnel_api_token = _outpost_secret("tunnel-api-token")
c.OutpostSpawner.service_backend = {{ .Values.hubConfig.serviceBackend | quote }}
{{- if eq .Values.tunnel.mode "sidecar" }}
c.OutpostSpawner.kubernetes_service_selector = {{ .Values.jupyterhub.hubPodLabels | toJson }}
{{- else }}
c.OutpostSpawner.kubernetes_service_selector = {{ include "addons.tunnelSelectorLabels" . | fromYaml | toJson }}
{{- end }}
{{- with .Values.hubConfig.extra }}

# --- hubConfig.extra ---
{{ . }}
{{- end }}
{{- end }}

{{/* Values to add to the zero-to-jupyterhub release (rendered into the ConfigMap). */}}
{{/* What the tunnel daemon reads at its start and that values may set: a new value
restarts its pod (generated values are kept in the Secret and never change). */}}
{{- define "addons.tunnelStartSecretsChecksum" -}}
{{- list .Values.sshKey .Values.tunnel.apiToken .Values.tunnel.metrics.token | toJson | sha256sum }}
{{- end }}

{{/* What the hub reads at its start from the Secret and that values may set (passwords,
flavors tokens, pinned host keys; the sidecar's keys too): a new value restarts the hub
pod through hub.annotations. */}}
{{- define "addons.hubStartSecretsChecksum" -}}
{{- $parts := list (include "addons.tunnelStartSecretsChecksum" .) }}
{{- range $name, $o := .Values.outposts }}
{{- $parts = append $parts (list $name $o.password $o.flavorsToken (($o.ssh | default dict).hostKey)) }}
{{- end }}
{{- $parts | toJson | sha256sum }}
{{- end }}

{{- define "addons.z2jhValues" -}}
{{- $hubSelector := .Values.jupyterhub.hubPodLabels }}
hub:
  annotations:
    # a secret set in hub-addons' values changed: restart the hub, which reads it at start
    checksum/outpost-start-secrets: {{ include "addons.hubStartSecretsChecksum" . | quote }}
  image:
    name: {{ .Values.jupyterhub.hubImage.name | quote }}
    tag: {{ .Values.jupyterhub.hubImage.tag | default .Chart.AppVersion | quote }}
  extraConfig:
    outpost-hub-addons: |
      exec(compile(open("/etc/outpost-hub/config/outpost_hub_config.py").read(), "outpost_hub_config.py", "exec"))
  extraVolumes:
    # The hub reads passwords, tokens and pinned host keys; never the SSH private key,
    # which only the tunnel daemon holds.
    - name: outpost-hub-secrets
      secret:
        secretName: {{ include "addons.secretName" . }}
        defaultMode: 0440
        items:
          {{- include "addons.hubSecretItems" . | nindent 10 }}
    - name: outpost-hub-config
      configMap:
        name: {{ include "addons.fullname" . }}-hub-config
        items:
          - key: outpost_hub_config.py
            path: outpost_hub_config.py
    {{- if eq .Values.tunnel.mode "sidecar" }}
    - name: outpost-tunnel-key
      secret:
        secretName: {{ include "addons.secretName" . }}
        defaultMode: 0440
        items:
          - key: ssh-key
            path: ssh-key
    - name: outpost-tunnels-state
      emptyDir: {}
    {{- end }}
  extraVolumeMounts:
    - name: outpost-hub-secrets
      mountPath: /etc/outpost-hub/secrets
      readOnly: true
    - name: outpost-hub-config
      mountPath: /etc/outpost-hub/config
      readOnly: true
  {{- if eq .Values.tunnel.mode "sidecar" }}
  extraContainers:
    - {{- include "addons.tunnelContainer" . | nindent 6 }}
  networkPolicy:
    ingress:
      # The proxy reaches user servers through the forwards the sidecar listens on.
      - from:
          - podSelector:
              matchLabels:
                {{- toYaml .Values.jupyterhub.proxyPodLabels | nindent 16 }}
  {{- else }}
  networkPolicy:
    egress:
      # The hub talks to the tunnel daemon's API, and checks its servers through the
      # forwards (any port: the daemon binds them as they come).
      - to:
          - podSelector:
              matchLabels:
                {{- include "addons.tunnelSelectorLabels" . | nindent 16 }}
  {{- end }}
proxy:
  chp:
    networkPolicy:
      egress:
        # The proxy reaches user servers through the tunnel daemon's forwards.
        - to:
            - podSelector:
                matchLabels:
                  {{- if eq .Values.tunnel.mode "sidecar" }}
                  {{- toYaml $hubSelector | nindent 18 }}
                  {{- else }}
                  {{- include "addons.tunnelSelectorLabels" . | nindent 18 }}
                  {{- end }}
{{- end }}

{{/* The Secret's keys the hub container reads. */}}
{{- define "addons.hubSecretItems" -}}
- key: tunnel-api-token
  path: tunnel-api-token
{{- $suffixes := list "password" "host-key" }}
{{- if .Values.hubConfig.flavorUpdates }}
{{- $suffixes = append $suffixes "flavors-token" }}
{{- end }}
{{- range $name, $o := .Values.outposts }}
{{- range $suffix := $suffixes }}
- key: outpost-{{ $name }}-{{ $suffix }}
  path: outpost-{{ $name }}-{{ $suffix }}
{{- end }}
{{- end }}
{{- end }}
