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

{{/* The registry the operator pushes to and the gateway reads: the bundled one when enabled. */}}
{{- define "edgefleet.registryURL" -}}
{{- $b := .Values.registry.bundled | default dict -}}
{{- if $b.enabled -}}
{{- $b.url | default (printf "https://%s-registry.%s.svc:%d" (include "edgefleet.fullname" .) .Release.Namespace (int $b.service.port)) -}}
{{- else -}}{{ .Values.registry.url }}{{- end -}}
{{- end -}}

{{/* Secret with the registry's `ca.crt`, or nothing. */}}
{{- define "edgefleet.registryCASecret" -}}
{{- $b := .Values.registry.bundled | default dict -}}
{{- if $b.enabled -}}{{ $b.tls.secretName | default (printf "%s-registry-tls" (include "edgefleet.fullname" .)) }}
{{- else -}}{{ .Values.registry.caSecret }}{{- end -}}
{{- end -}}

{{/* Secret with `username` and `password` for the registry, or nothing. */}}
{{- define "edgefleet.registryCredentialsSecret" -}}
{{- $b := .Values.registry.bundled | default dict -}}
{{- if $b.enabled -}}{{ printf "%s-registry-auth" (include "edgefleet.fullname" .) }}
{{- else -}}{{ .Values.registry.credentialsSecret }}{{- end -}}
{{- end -}}

{{- define "edgefleet.registrySelector" -}}
app.kubernetes.io/name: edgefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: registry
{{- end -}}

{{- define "edgefleet.registryImage" -}}
{{- $img := .Values.registry.bundled.image -}}
{{- if not $img.repository -}}
{{- fail "registry.bundled.image.repository is required: the image `edgefleet image build-registry` pushed, in a registry the nodes can pull from" -}}
{{- end -}}
{{- if $img.digest -}}{{ printf "%s@%s" $img.repository $img.digest }}
{{- else -}}{{ printf "%s:%s" $img.repository $img.tag }}{{- end -}}
{{- end -}}

{{/* Names in the bundled registry's serving certificate: its Service's DNS names, its
fixed cluster IP, the host of registry.bundled.url, and the user's. */}}
{{- define "edgefleet.registryNames" -}}
{{- $b := .Values.registry.bundled -}}
{{- $svc := printf "%s-registry" (include "edgefleet.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- with $b.service.clusterIP }}{{ $names = append $names . }}{{ end -}}
{{- with $b.url }}{{ $names = append $names (urlParse .).hostname }}{{ end -}}
{{- join "," (uniq (concat $names $b.names)) -}}
{{- end -}}
