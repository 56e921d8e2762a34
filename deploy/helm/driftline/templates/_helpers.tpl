{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "driftline.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name. */}}
{{- define "driftline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "driftline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "driftline.labels" -}}
helm.sh/chart: {{ include "driftline.chart" . }}
app.kubernetes.io/name: {{ include "driftline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: driftline
{{- end -}}

{{/* Selector labels of one component: include "driftline.selectorLabels" (dict "ctx" . "component" "worker") */}}
{{- define "driftline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftline.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "driftline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "driftline.secretName" -}}
{{- default (printf "%s-clickhouse" (include "driftline.fullname" .)) .Values.clickhouse.existingSecret -}}
{{- end -}}

{{- define "driftline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "driftline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by worker and API: the DRIFTLINE_* names stream/settings.py reads. */}}
{{- define "driftline.env" -}}
- name: DRIFTLINE_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" .Values.kafka.bootstrap | quote }}
- name: DRIFTLINE_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: DRIFTLINE_PARTITIONS
  value: {{ .Values.kafka.partitions | int | toString | quote }}
- name: DRIFTLINE_UNKNOWN_MODELS
  value: {{ .Values.unknownModels | quote }}
- name: DRIFTLINE_DATA_DIR
  value: {{ .Values.worker.dataDir | quote }}
- name: DRIFTLINE_CLICKHOUSE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "driftline.secretName" . }}
      key: {{ .Values.clickhouse.existingSecretKey }}
{{- with .Values.kafka.security }}
{{- if not (has .protocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) }}
{{- fail "kafka.security.protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" }}
{{- end }}
- name: DRIFTLINE_KAFKA_SECURITY_PROTOCOL
  value: {{ .protocol | quote }}
{{- if hasPrefix "SASL_" .protocol }}
- name: DRIFTLINE_KAFKA_SASL_MECHANISM
  value: {{ .saslMechanism | quote }}
- name: DRIFTLINE_KAFKA_SASL_USERNAME
  value: {{ required "kafka.security.saslUsername is required for SASL" .saslUsername | quote }}
- name: DRIFTLINE_KAFKA_SASL_PASSWORD_FILE
  value: /etc/driftline/kafka-sasl/password
{{- end }}
{{- if .tlsSecret }}
- name: DRIFTLINE_KAFKA_SSL_CAFILE
  value: /etc/driftline/kafka-tls/ca.crt
{{- if .clientCertificate }}
- name: DRIFTLINE_KAFKA_SSL_CERTFILE
  value: /etc/driftline/kafka-tls/tls.crt
- name: DRIFTLINE_KAFKA_SSL_KEYFILE
  value: /etc/driftline/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- name: DRIFTLINE_CLICKHOUSE_CA_FILE
  value: /etc/driftline/clickhouse-tls/ca.crt
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Secrets of the secured connections, mounted read-only where driftline.env points. */}}
{{- define "driftline.secretVolumeMounts" -}}
{{- if hasPrefix "SASL_" .Values.kafka.security.protocol }}
- name: kafka-sasl
  mountPath: /etc/driftline/kafka-sasl
  readOnly: true
{{- end }}
{{- if .Values.kafka.security.tlsSecret }}
- name: kafka-tls
  mountPath: /etc/driftline/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- name: clickhouse-tls
  mountPath: /etc/driftline/clickhouse-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "driftline.secretVolumes" -}}
{{- with .Values.kafka.security }}
{{- if hasPrefix "SASL_" .protocol }}
- name: kafka-sasl
  secret:
    secretName: {{ required "kafka.security.saslPasswordSecret is required for SASL" .saslPasswordSecret }}
    items:
      - key: {{ .saslPasswordKey }}
        path: password
{{- end }}
{{- if .tlsSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .tlsSecret }}
{{- end }}
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- name: clickhouse-tls
  secret:
    secretName: {{ .Values.clickhouse.caSecret }}
{{- end }}
{{- end -}}

{{/* Prometheus scrape annotations for a pod serving metrics on `port`. */}}
{{- define "driftline.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.scrape }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | toString | quote }}
prometheus.io/path: {{ .ctx.Values.metrics.path | quote }}
{{- end }}
{{- end -}}
