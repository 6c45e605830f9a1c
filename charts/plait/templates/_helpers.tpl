{{/*
Names, labels and images shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "plait.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release-qualified name every object starts with (fullnameOverride wins; a release whose name
already contains the chart name is not repeated). Truncated so that suffixes still fit 63 chars.
*/}}
{{- define "plait.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "plait.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "plait.labels" -}}
helm.sh/chart: {{ include "plait.chart" . }}
{{ include "plait.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plait
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The immutable subset used in selectors (Deployments, Services, PDBs). */}}
{{- define "plait.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ---- operator ---- */}}

{{- define "plait.operator.fullname" -}}
{{- printf "%s-operator" (include "plait.fullname" .) }}
{{- end }}

{{- define "plait.operator.selectorLabels" -}}
{{ include "plait.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "plait.operator.labels" -}}
{{ include "plait.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "plait.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "plait.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease, passed to `plait operator --leader-lease-name`, in the release namespace
(POD_NAMESPACE). Release-qualified, so two releases in one namespace never share it; the Role is
scoped to this name.
*/}}
{{- define "plait.operator.leaseName" -}}
{{ include "plait.fullname" . }}-operator
{{- end }}

{{/* ---- workers ---- */}}

{{- define "plait.worker.serviceAccountName" -}}
{{- if .Values.workers.serviceAccount.create }}
{{- default (printf "%s-worker" (include "plait.fullname" .)) .Values.workers.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.workers.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Call with (dict "root" $ "pool" $pool). */}}
{{- define "plait.pool.fullname" -}}
{{- printf "%s-worker-%s" (include "plait.fullname" .root) .pool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plait.pool.selectorLabels" -}}
{{ include "plait.selectorLabels" .root }}
app.kubernetes.io/component: worker
plait.dev/pool: {{ .pool.name }}
{{- end }}

{{- define "plait.pool.labels" -}}
{{ include "plait.labels" .root }}
app.kubernetes.io/component: worker
plait.dev/pool: {{ .pool.name }}
{{- end }}

{{- define "plait.pool.serviceAccountName" -}}
{{- default (include "plait.worker.serviceAccountName" .root) .pool.serviceAccountName }}
{{- end }}

{{/*
An image reference from (dict "image" $image "root" $): repository, then ":tag" (default: the
chart's appVersion), then "@digest" when one is given.
*/}}
{{- define "plait.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Whether the operator watches every namespace (ClusterRole) or only watchNamespaces (Roles). */}}
{{- define "plait.operator.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{- end }}
{{- end }}

{{/*
The Prometheus label matcher that picks this release's series in alert and autoscaler queries.
*/}}
{{- define "plait.metricsSelector" -}}
{{- tpl .Values.metrics.selector . }}
{{- end }}

{{/*
The payload store's environment (plait reads PLAIT_PAYLOAD_STORE and friends; boto3 the AWS_*
variables of the credentials Secret), for the operator and every worker container.
*/}}
{{- define "plait.payloadEnv" -}}
{{- with .Values.payloads }}
{{- if .store }}
- name: PLAIT_PAYLOAD_STORE
  value: {{ .store | quote }}
- name: PLAIT_INLINE_PAYLOAD_BYTES
  value: {{ int64 .inlineBytes | quote }}
{{- with .endpoint }}
- name: PLAIT_PAYLOAD_STORE_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "plait.payloadEnvFrom" -}}
{{- if and .Values.payloads.store .Values.payloads.credentials.secretName }}
- secretRef:
    name: {{ .Values.payloads.credentials.secretName | quote }}
{{- end }}
{{- end }}

{{/* ---- web UI ---- */}}

{{- define "plait.ui.fullname" -}}
{{- printf "%s-ui" (include "plait.fullname" .) }}
{{- end }}

{{- define "plait.ui.selectorLabels" -}}
{{ include "plait.selectorLabels" . }}
app.kubernetes.io/component: ui
{{- end }}

{{- define "plait.ui.labels" -}}
{{ include "plait.labels" . }}
app.kubernetes.io/component: ui
{{- end }}

{{- define "plait.ui.serviceAccountName" -}}
{{- if .Values.ui.serviceAccount.create }}
{{- default (include "plait.ui.fullname" .) .Values.ui.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.ui.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The OTEL_* environment of a plait process (after POD_NAME and POD_NAMESPACE, which it refers to):
nothing when the endpoint is empty. Takes dict "tracing" (the top-level values), "override" (a
pool's own `tracing`, fields it sets win) and "attributes" (resource attributes of this process).
*/}}
{{- define "plait.tracingEnv" -}}
{{- $base := .tracing }}
{{- $over := default dict .override }}
{{- $endpoint := hasKey $over "endpoint" | ternary $over.endpoint $base.endpoint }}
{{- if $endpoint }}
{{- $sampler := hasKey $over "sampler" | ternary $over.sampler $base.sampler }}
{{- $samplerArg := hasKey $over "samplerArg" | ternary $over.samplerArg $base.samplerArg }}
{{- $pod := dict "k8s.pod.name" "$(POD_NAME)" "k8s.namespace.name" "$(POD_NAMESPACE)" }}
{{- $attributes := merge (dict) (default dict $over.resourceAttributes) (default dict $base.resourceAttributes) .attributes $pod }}
{{- $pairs := list }}
{{- range $key, $value := $attributes }}
{{- $pairs = append $pairs (printf "%s=%v" $key $value) }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $endpoint | quote }}
{{- with $sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $samplerArg) }}
{{- if ne (toString $samplerArg) "" }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ toString $samplerArg | quote }}
{{- end }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- end }}
