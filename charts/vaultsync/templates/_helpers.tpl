{{/* The name of every namespaced object, and the prefix of the cluster-wide ones. */}}
{{- define "vaultsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selects this release's pods. */}}
{{- define "vaultsync.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vaultsync.labels" -}}
{{ include "vaultsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vaultsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vaultsync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The HTTP endpoints' host for probes: the bind address unless it is a wildcard. */}}
{{- define "vaultsync.probeHost" -}}
{{- if not (has .Values.http.bindAddress (list "0.0.0.0" "::" "[::]")) -}}
{{ .Values.http.bindAddress }}
{{- end -}}
{{- end -}}

{{/* An address for HOST:PORT: IPv6 in brackets. */}}
{{- define "vaultsync.bracketed" -}}
{{- if contains ":" . -}}[{{ . }}]{{- else -}}{{ . }}{{- end -}}
{{- end -}}
