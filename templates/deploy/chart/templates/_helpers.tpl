{{/* Managed by the microapp template. Shared pieces of the chart's manifests. */}}

{{- define "microapp.name" -}}
{{- required "app.id is missing: run `make chart-values` (values from microapp.yaml) first" .Values.app.id -}}
{{- end -}}

{{/* Who and what this is, so the cluster itself can answer "whose is this". */}}
{{- define "microapp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "microapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "microapp.labels" -}}
{{ include "microapp.selectorLabels" . }}
app.kubernetes.io/part-of: microapps
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
microapp/app-id: {{ .Values.app.id }}
microapp/team: {{ .Values.app.teamLabel | quote }}
microapp/risk-tier: {{ .Values.app.tier | quote }}
microapp/kind: {{ .Values.app.kind }}
microapp/classification: {{ .Values.app.classification }}
microapp/template-version: {{ .Values.app.templateVersion | quote }}
microapp/stage: {{ .Values.app.stage }}
{{- with .Values.environment }}
microapp/environment: {{ . }}
{{- end }}
{{- end -}}

{{- define "microapp.annotations" -}}
microapp/owner: {{ .Values.app.owner | quote }}
microapp/team: {{ .Values.app.team | quote }}
microapp/support: {{ .Values.app.support | quote }}
microapp/expires: {{ .Values.app.expires | quote }}
microapp/pii: {{ .Values.app.pii | quote }}
{{- end -}}

{{- define "microapp.image" -}}
{{- $digest := required "image.digest is missing: deploy the digest CI built, scanned and signed (make deploy IMAGE_DIGEST=sha256:...)" .Values.image.digest -}}
{{- if not (hasPrefix "sha256:" $digest) }}{{ fail (printf "image.digest %q is not a sha256 digest: images are deployed by digest, never by tag" $digest) }}{{ end -}}
{{ required "image.repository is missing: run make chart-values" .Values.image.repository }}@{{ $digest }}
{{- end -}}

{{/* The restricted Pod Security Standard, for the app and its migration Job alike. */}}
{{- define "microapp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "microapp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The only credential in the pod: a short-lived service-account token for Vault's audience,
     rotated by the kubelet. No Kubernetes API token is mounted. */}}
{{- define "microapp.vaultTokenVolume" -}}
- name: vault-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          audience: {{ .Values.vault.audience | quote }}
          expirationSeconds: 3600
{{- end -}}

{{- define "microapp.baseUrl" -}}
{{- .Values.baseUrl | default (printf "https://%s" (required "ingress.host is missing: set it in deploy/values-<environment>.yaml" .Values.ingress.host)) -}}
{{- end -}}

{{/* The app's environment: where Vault, the collector and the manifest are; no secret values. */}}
{{- define "microapp.env" -}}
- name: MICROAPP_BASE_URL
  value: {{ include "microapp.baseUrl" . | quote }}
- name: MICROAPP_LOG_FORMAT
  value: json
- name: VAULT_ADDR
  value: {{ required "platform.vaultAddr is missing: the environment's Vault (deploy/values-<environment>.yaml)" .Values.platform.vaultAddr | quote }}
- name: VAULT_AUTH_METHOD
  value: kubernetes
- name: VAULT_AUTH_MOUNT
  value: {{ .Values.platform.vaultAuthMount | quote }}
- name: VAULT_KUBERNETES_ROLE
  value: {{ .Values.vault.role | quote }}
- name: VAULT_KUBERNETES_JWT_FILE
  value: /var/run/secrets/vault/token
{{- with .Values.platform.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "deployment.environment.name=%s" .Values.environment | quote }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Every egress destination as JSON: the manifest's (identity provider, connectors), the
     environment's endpoints (Vault, OTLP collector, SIEM) and its extra ones. */}}
{{- define "microapp.destinations" -}}
{{- $all := list -}}
{{- range concat (.Values.egress.manifest | default list) (.Values.egress.extra | default list) -}}
{{- $all = append $all . -}}
{{- end -}}
{{- $endpoints := list (list "vault" .Values.platform.vaultAddr "secrets (platform.vaultAddr)") (list "otlp-collector" .Values.platform.otlpEndpoint "telemetry (platform.otlpEndpoint)") (list "siem" .Values.platform.siemUrl "audit delivery (platform.siemUrl)") -}}
{{- range $endpoints -}}
{{- $url := index . 1 -}}
{{- if $url -}}
{{- $u := urlParse $url -}}
{{- $parts := splitList ":" $u.host -}}
{{- $port := ternary (last $parts) (ternary "443" "80" (eq $u.scheme "https")) (eq (len $parts) 2) -}}
{{- $all = append $all (dict "name" (index . 0) "host" (first $parts) "port" (atoi $port) "purpose" (index . 2)) -}}
{{- end -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}
