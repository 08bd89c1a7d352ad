// One registry of secrets (passwords, full connection strings) and one function that removes them
// from any text before it is printed, logged or audited.

const secrets = new Set<string>();

/** Remembers a value that must never be shown. Short values are ignored: they would mangle ordinary text. */
export function registerSecret(value: string | undefined | null): void {
	if (!value || value.length < 3) return;
	secrets.add(value);
	try {
		const encoded = encodeURIComponent(value);
		if (encoded !== value) secrets.add(encoded);
	} catch {
		// not encodable: the raw form is enough
	}
}

const URL_PASSWORD = /\b(postgres(?:ql)?:\/\/[^:/@\s]*):([^@\s]*)@/gi;

/** Masks every registered secret and any password embedded in a postgres:// URL. */
export function redact(text: string): string {
	let out = text;
	// Longest first, so a connection string is masked whole before its password alone.
	for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
		if (out.includes(s)) out = out.split(s).join("****");
	}
	return out.replace(URL_PASSWORD, "$1:****@");
}
