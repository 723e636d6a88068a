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

{{- define "edgefleet.gatewaySelector" -}}
app.kubernetes.io/name: edgefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The gateway runs the control-plane image (`edgefleet gateway`) unless told otherwise. */}}
{{- define "edgefleet.gatewayImage" -}}
{{- $img := .Values.gateway.image -}}
{{- if $img.repository -}}
{{- if $img.digest -}}{{ printf "%s@%s" $img.repository $img.digest }}
{{- else -}}{{ printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}{{- end -}}
{{- else -}}{{ include "edgefleet.operatorImage" . }}{{- end -}}
{{- end -}}

{{/* Names in the gateway's serving certificate: the Service's DNS names plus the user's. */}}
{{- define "edgefleet.gatewayNames" -}}
{{- $svc := printf "%s-gateway" (include "edgefleet.fullname" .) -}}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) -}}
{{- join "," (concat .Values.gateway.names $names) -}}
{{- end -}}
