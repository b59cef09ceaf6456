{{/* Chart name, as upstream: also the DaemonSet's selector label `app`. */}}
{{- define "sscd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the DaemonSet and the Service, as upstream. */}}
{{- define "sscd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "sscd.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/name: {{ include "sscd.name" . | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: secrets-store-csi-driver
app: {{ include "sscd.name" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name (.Chart.Version | replace "+" "_") | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "sscd.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/* The port of linux.metricsAddr (":8095", "0.0.0.0:8095"). */}}
{{- define "sscd.metricsPort" -}}
{{- regexFind "[0-9]+$" (toString .Values.linux.metricsAddr) | default "8095" -}}
{{- end -}}

{{/* Keys of an upstream values file that this chart accepts and does not use, when set. */}}
{{- define "sscd.ignoredValues" -}}
{{- $ignored := list -}}
{{- if and .Values.windows .Values.windows.enabled -}}
{{- $ignored = append $ignored "windows.enabled=true: the driver runs on Linux nodes only; nothing is installed for Windows nodes" -}}
{{- end -}}
{{- if .Values.rbac.pspEnabled -}}
{{- $ignored = append $ignored "rbac.pspEnabled=true: PodSecurityPolicy was removed in Kubernetes 1.25; no policy is created" -}}
{{- end -}}
{{- with .Values.linux.crds -}}
{{- if or (and .image .image.repository) .resources .annotations .podLabels -}}
{{- $ignored = append $ignored "linux.crds.image/resources/annotations/podLabels: no CRD hook jobs run; the CRDs come from the chart's crds/ directory" -}}
{{- end -}}
{{- if eq (toString .enabled) "false" -}}
{{- $ignored = append $ignored "linux.crds.enabled=false: Helm installs crds/ regardless; use `helm install --skip-crds` to leave them out" -}}
{{- end -}}
{{- end -}}
{{- range $ignored }}
  - {{ . }}
{{- end -}}
{{- end -}}
