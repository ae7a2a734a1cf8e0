{{- define "embedding-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "embedding-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "embedding-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "embedding-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "embedding-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "embedding-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A number as its digits: YAML gives Helm whole numbers as float64, which print as 1.6e+07. */}}
{{- define "embedding-operator.number" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* worker.extraEnv as the JSON object EMBEDDING_OPERATOR_WORKER_EXTRA_ENV. */}}
{{- define "embedding-operator.envMap" -}}
{{- $out := dict -}}
{{- range . }}{{ $_ := set $out .name .value }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The worker Jobs' scheduling and pull secrets, as the JSON EMBEDDING_OPERATOR_WORKER_POD_SPEC
(empty when nothing is set). */}}
{{- define "embedding-operator.workerPodSpec" -}}
{{- $spec := dict -}}
{{- with .Values.worker.nodeSelector }}{{ $_ := set $spec "nodeSelector" . }}{{ end -}}
{{- with .Values.worker.tolerations }}{{ $_ := set $spec "tolerations" . }}{{ end -}}
{{- with .Values.worker.affinity }}{{ $_ := set $spec "affinity" . }}{{ end -}}
{{- with .Values.worker.priorityClassName }}{{ $_ := set $spec "priorityClassName" . }}{{ end -}}
{{- with (.Values.worker.imagePullSecrets | default .Values.imagePullSecrets) }}{{ $_ := set $spec "imagePullSecrets" . }}{{ end -}}
{{- if $spec }}{{ toJson $spec }}{{ end -}}
{{- end -}}

{{/* Generated manifests of files/ (copies of crds/, kept equal by a test), one object per document. */}}
{{- define "embedding-operator.generated" -}}
{{- $root := index . 0 -}}
{{- $keep := index . 2 -}}
{{- range $doc := splitList "\n---\n" ($root.Files.Get (index . 1)) }}
{{- $obj := fromYaml $doc }}
{{- if $obj.kind }}
{{- $_ := set $obj.metadata "labels" (merge (dict) (include "embedding-operator.labels" $root | fromYaml) ($obj.metadata.labels | default dict)) }}
{{- if not $keep }}
{{- $_ := unset $obj.metadata "annotations" }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "embedding-operator.workerClusterRole" -}}
{{- printf "%s-worker" (include "embedding-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's rights in the namespaces it serves (cluster-wide or per namespace). */}}
{{- define "embedding-operator.operatorRules" -}}
# the resources it reconciles
- apiGroups: ["embedding-operator.dev"]
  resources: ["deploymentembeddings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["embedding-operator.dev"]
  resources: ["deploymentembeddings/status"]
  verbs: ["get", "patch"]
# ownerReferences with blockOwnerDeletion on its Jobs
- apiGroups: ["embedding-operator.dev"]
  resources: ["deploymentembeddings/finalizers"]
  verbs: ["update"]
# the runs (the operator guard pins what a Job may be)
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# a spec change removes the old result's ConfigMaps (the guard allows only result ConfigMaps)
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["deletecollection"]
# list: a Job's FailedCreate Events say why it has no pod (e.g. a missing ServiceAccount)
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "list"]
# the worker's ServiceAccount and its RoleBinding of the worker ClusterRole, and nothing else
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  resourceNames: [{{ include "embedding-operator.workerClusterRole" . | quote }}]
  verbs: ["bind"]
{{- end -}}

{{- define "embedding-operator.apiServer.name" -}}
{{- printf "%s-api-server" (include "embedding-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "embedding-operator.apiServer.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api-server
{{- end -}}
