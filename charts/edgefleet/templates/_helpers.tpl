{{- define "edgefleet.name" -}}edgefleet{{- end -}}

{{- define "edgefleet.fullname" -}}
{{- if contains "edgefleet" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-edgefleet" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "edgefleet.labels" -}}
app.kubernetes.io/name: edgefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgefleet
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "edgefleet.operatorSelector" -}}
app.kubernetes.io/name: edgefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "edgefleet.operatorImage" -}}
{{- $img := .Values.operator.image -}}
{{- if $img.digest -}}{{ printf "%s@%s" $img.repository $img.digest }}
{{- else -}}{{ printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}{{- end -}}
{{- end -}}
