/** Why text is not a manifest: `syntax` (not YAML, not the manifest's shape) or a bad `field`. */
export class ManifestError extends Error {
  constructor(
    readonly kind: "syntax" | "field",
    readonly field: string | undefined,
    readonly reason: string,
  ) {
    super(field ? `manifest field \`${field}\`: ${reason}` : `manifest does not parse: ${reason}`);
  }
}

export const syntax = (reason: string) => new ManifestError("syntax", undefined, reason);
export const fieldError = (field: string, reason: string) => new ManifestError("field", field, reason);
