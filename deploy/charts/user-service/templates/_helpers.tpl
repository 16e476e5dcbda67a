{{/* The image reference: repository:tag, with @digest when one is pinned. */}}
{{- define "user-service.image" -}}
{{- $tag := required "image.tag is required (release-console sets it per release)" .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}
