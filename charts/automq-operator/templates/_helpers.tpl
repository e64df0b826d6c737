{{/* Chart name, overridable with nameOverride. */}}
{{- define "automq-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: fullnameOverride, or "<release>-<chart>" (just the release
name when it already contains the chart name). Kept to 63 characters for DNS labels.
*/}}
{{- define "automq-operator.fullname" -}}
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

{{- define "automq-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "automq-operator.labels" -}}
helm.sh/chart: {{ include "automq-operator.chart" . }}
{{ include "automq-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: automq
{{- end }}

{{/* Labels that select the operator pods; never change them (Deployment selectors are immutable). */}}
{{- define "automq-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "automq-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "automq-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "automq-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "automq-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator may do with the resources it reconciles and the objects it creates.
Shared by the ClusterRole (all namespaces) and the Role (watchNamespace): keep it exactly
what the operator's code touches, without wildcards.
*/}}
{{- define "automq-operator.rules" -}}
- apiGroups: ["automq.rs"]
  resources: ["automqclusters", "analyticswarehouses", "topiclinks"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["automq.rs"]
  resources: ["automqclusters/status", "analyticswarehouses/status", "topiclinks/status"]
  verbs: ["get", "patch"]
- apiGroups: ["automq.rs"]
  resources: ["automqclusters/finalizers", "analyticswarehouses/finalizers", "topiclinks/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
