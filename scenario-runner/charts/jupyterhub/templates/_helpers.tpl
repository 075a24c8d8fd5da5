{{/*
Helpers of the scenario runner's zero-to-jupyterhub stand-in. Resource names are z2jh's
defaults (fullnameOverride ""): hub, proxy, proxy-api, proxy-public, hub-db-dir.
*/}}

{{/* Labels of every object; $ is (list root component). */}}
{{- define "jupyterhub.labels" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 -}}
{{ include "jupyterhub.matchLabels" . }}
chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
heritage: {{ $root.Release.Service }}
app.kubernetes.io/name: jupyterhub
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* z2jh's selector labels (its "legacy" labels, still the selectors in z2jh 4). */}}
{{- define "jupyterhub.matchLabels" -}}
component: {{ index . 1 }}
app: jupyterhub
release: {{ (index . 0).Release.Name }}
{{- end }}

{{- define "jupyterhub.hubServiceAccount" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- .Values.hub.serviceAccount.name | default "hub" }}
{{- else }}
{{- .Values.hub.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* "name:tag" of an image of this chart; an empty tag means the chart's appVersion. */}}
{{- define "jupyterhub.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.name ($image.tag | default $root.Chart.AppVersion) }}
{{- end }}

{{/* imagePullPolicy and imagePullSecrets lines of a container/pod; $ is an image. */}}
{{- define "jupyterhub.pullPolicy" -}}
{{- with .pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{- define "jupyterhub.pullSecrets" -}}
{{- with .pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
A container's env list from z2jh's extraEnv: a list as is, or a map of name -> string
value or name -> EnvVar fields (valueFrom, ...), in the order of the names.
*/}}
{{- define "jupyterhub.extraEnv" -}}
{{- if kindIs "slice" . }}
{{- with . }}
{{ toYaml . }}
{{- end }}
{{- else }}
{{- range $name := keys . | sortAlpha }}
{{- $value := index $ $name }}
{{- if kindIs "map" $value }}
- {{ merge (dict "name" $name) (omit $value "name") | toYaml | nindent 2 | trim }}
{{- else }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A probe of z2jh's shape ({enabled, timings}) against GET <path> on the port "http".
$ is (list probe path).
*/}}
{{- define "jupyterhub.probe" -}}
{{- $probe := index . 0 -}}
httpGet:
  path: {{ index . 1 }}
  port: http
{{ omit $probe "enabled" | toYaml }}
{{- end }}

{{/*
A generated secret value, made once: the value given in the values, else the one kept in
the hub Secret (lookup), else new (64 hex characters). $ is (list root key given).
*/}}
{{- define "jupyterhub.keptSecret" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $given := index . 2 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace "hub" | default dict }}
{{- $data := $existing.data | default dict }}
{{- if hasKey $data $key }}
{{- index $data $key | b64dec }}
{{- else }}
{{- randAlphaNum 64 | sha256sum }}
{{- end }}
{{- end }}
{{- end }}

{{/* The proxy's auth token (CONFIGPROXY_AUTH_TOKEN of the hub and the proxy). */}}
{{- define "jupyterhub.proxyToken" -}}
{{- include "jupyterhub.keptSecret" (list . "hub.config.ConfigurableHTTPProxy.auth_token" (include "jupyterhub.givenProxyToken" .)) }}
{{- end }}

{{- define "jupyterhub.givenProxyToken" -}}
{{- dig "ConfigurableHTTPProxy" "auth_token" "" .Values.hub.config | default .Values.proxy.secretToken }}
{{- end }}

{{/*
Egress rules of a NetworkPolicy from z2jh's egressAllowRules flags plus its egress list.
$ is (list root networkPolicy). The flags and the rules they render are z2jh's.
*/}}
{{- define "jupyterhub.egressRules" -}}
{{- $root := index . 0 }}
{{- $allow := (index . 1).egressAllowRules }}
{{- $private := list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" }}
{{- $metadata := printf "%s/32" $root.Values.singleuser.cloudMetadata.ip }}
{{- if or $allow.dnsPortsCloudMetadataServer $allow.dnsPortsKubeSystemNamespace $allow.dnsPortsPrivateIPs }}
# DNS
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  to:
    {{- if $allow.dnsPortsCloudMetadataServer }}
    - ipBlock:
        cidr: {{ $metadata }}
    {{- end }}
    {{- if $allow.dnsPortsKubeSystemNamespace }}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
    {{- end }}
    {{- if $allow.dnsPortsPrivateIPs }}
    {{- range $private }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
    {{- end }}
{{- end }}
{{- if $allow.nonPrivateIPs }}
# public addresses
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          {{- range $private }}
          - {{ . }}
          {{- end }}
          - {{ $metadata }}
{{- end }}
{{- if $allow.privateIPs }}
# private addresses
- to:
    {{- range $private }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
{{- end }}
{{- if $allow.cloudMetadataServer }}
# the cloud metadata server
- to:
    - ipBlock:
        cidr: {{ $metadata }}
{{- end }}
{{- with (index . 1).egress }}
# networkPolicy.egress
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ingress rule that lets labelled pods reach a port, as z2jh makes it: pods with the
label in this namespace, and with interNamespaceAccessLabels=accept also labelled pods in
any namespace and every pod of labelled namespaces. $ is (list networkPolicy label ports).
*/}}
{{- define "jupyterhub.labelIngress" -}}
{{- $netpol := index . 0 }}
{{- $label := index . 1 }}
- ports:
    {{- range index . 2 }}
    - port: {{ . }}
    {{- end }}
  from:
    - podSelector:
        matchLabels:
          {{ $label }}: "true"
      {{- if eq $netpol.interNamespaceAccessLabels "accept" }}
      namespaceSelector:
        matchLabels: {}
    - namespaceSelector:
        matchLabels:
          {{ $label }}: "true"
      {{- end }}
{{- end }}

{{/* Ingress to listed ports from anywhere (allowedIngressPorts). */}}
{{- define "jupyterhub.openPorts" -}}
{{- with . }}
- ports:
    {{- range . }}
    - port: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
