{{/* Names, labels and secret helpers of the jupyterhub-outpost chart. */}}

{{- define "outpost.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outpost.fullname" -}}
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

{{/* Selector labels: stable for the life of a release (used by Services and NetworkPolicies). */}}
{{- define "outpost.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outpost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: outpost
{{- end }}

{{/* All labels: app.kubernetes.io/* from this one helper. */}}
{{- define "outpost.labels" -}}
{{ include "outpost.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jupyterhub-outpost
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "outpost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outpost.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "outpost.secretName" -}}
{{- default (include "outpost.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "outpost.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True (non-empty) when the SQLite data dir lives on a PersistentVolumeClaim. */}}
{{- define "outpost.usePVC" -}}
{{- if and .Values.persistence.enabled (eq .Values.database.type "sqlite") }}true{{ end }}
{{- end }}

{{/*
The data of the chart-managed Secret, base64-encoded, as a dict.
Every generated value is made once: on upgrade the existing Secret is read with
`lookup` and its values are reused. Values given in values.yaml always win.
*/}}
{{- define "outpost.secretData" -}}
{{- $old := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "outpost.fullname" .) }}
{{- if and $existing $existing.data }}
{{- $old = $existing.data }}
{{- end }}
{{- $oldCreds := dict }}
{{- if hasKey $old "hub_credentials.yaml" }}
{{- $oldCreds = (index $old "hub_credentials.yaml" | b64dec | fromYaml) | default dict }}
{{- end }}
{{- $creds := dict }}
{{- $keys := dict }}
{{- $hubApi := dict }}
{{- range $hub, $settings := .Values.hubs }}
{{- $settings = $settings | default dict }}
{{- $password := $settings.password | default (index $oldCreds $hub) | default (randAlphaNum 40) }}
{{- $_ := set $creds $hub $password }}
{{- $_ := set $keys $hub ($settings.sshPublicKeys | default list) }}
{{- if $settings.apiUrl }}
{{- $entry := dict "url" $settings.apiUrl "layout" ($settings.apiLayout | default "outpost") }}
{{- with $settings.outpostName }}{{ $_ := set $entry "outpost_name" . }}{{ end }}
{{- with $settings.flavorsUpdateToken }}{{ $_ := set $entry "flavors_update_token" . }}{{ end }}
{{- $_ := set $hubApi $hub $entry }}
{{- end }}
{{- end }}
{{- $data := dict }}
{{- $_ := set $data "hub_credentials.yaml" (toYaml $creds | b64enc) }}
{{- $_ := set $data "hub_api.yaml" (toYaml $hubApi | b64enc) }}
{{- $_ := set $data "ssh_authorized_keys.yaml" (toYaml $keys | b64enc) }}
{{- if .Values.ssh.hostKey }}
{{- $_ := set $data "ssh_host_ed25519_key" (.Values.ssh.hostKey | b64enc) }}
{{- else if hasKey $old "ssh_host_ed25519_key" }}
{{- $_ := set $data "ssh_host_ed25519_key" (index $old "ssh_host_ed25519_key") }}
{{- else }}
{{- $_ := set $data "ssh_host_ed25519_key" (genPrivateKey "ed25519" | b64enc) }}
{{- end }}
{{- if .Values.cryptKeys }}
{{- $_ := set $data "crypt_keys" (join "," .Values.cryptKeys | b64enc) }}
{{- else if hasKey $old "crypt_keys" }}
{{- $_ := set $data "crypt_keys" (index $old "crypt_keys") }}
{{- else }}
{{- $_ := set $data "crypt_keys" (randBytes 32 | replace "+" "-" | replace "/" "_" | b64enc) }}
{{- end }}
{{- if .Values.metrics.token }}
{{- $_ := set $data "metrics_token" (.Values.metrics.token | b64enc) }}
{{- else if hasKey $old "metrics_token" }}
{{- $_ := set $data "metrics_token" (index $old "metrics_token") }}
{{- else }}
{{- $_ := set $data "metrics_token" (randAlphaNum 40 | b64enc) }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/* The config file the Outpost reads: chart-managed settings, then outpostConfig. */}}
{{- define "outpost.configFile" -}}
# Written by the jupyterhub-outpost Helm chart. Settings below come from the chart's
# values; the operator's `outpostConfig` follows and may override any of them.
c.JupyterHubOutpost.hub_credentials = "/etc/outpost/secrets/hub_credentials.yaml"
c.JupyterHubOutpost.ssh_authorized_keys = "/etc/outpost/secrets/ssh_authorized_keys.yaml"
c.JupyterHubOutpost.ssh_enabled = {{ if .Values.ssh.enabled }}True{{ else }}False{{ end }}
c.JupyterHubOutpost.ssh_ip = "0.0.0.0"
c.JupyterHubOutpost.ssh_port = {{ .Values.ssh.port | int }}
c.JupyterHubOutpost.ssh_host_key_file = "/etc/outpost/secrets/ssh_host_ed25519_key"
# Where the Outpost may call each hub (hubs.<hub>.apiUrl; optional with existingSecret).
import os as _os
if _os.path.exists("/etc/outpost/hub-api/hub_api.yaml"):
    c.JupyterHubOutpost.hub_api = "/etc/outpost/hub-api/hub_api.yaml"
{{- if .Values.ssh.allowedForwardTargets }}
c.JupyterHubOutpost.allowed_forward_targets = {{ .Values.ssh.allowedForwardTargets | toJson }}
{{- end }}
{{- if .Values.https.enabled }}
c.JupyterHubOutpost.certfile = "/etc/outpost/tls/tls.crt"
c.JupyterHubOutpost.keyfile = "/etc/outpost/tls/tls.key"
{{- end }}

# --- outpostConfig ---
{{ .Values.outpostConfig }}
{{- end }}
