/**
 * Hands a downloaded body to the browser as a file: an object URL and a temporary <a download>.
 * (A plain link to the export would not carry an API token, which travels in a header.)
 */
export function saveFile(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The click has started the download; the URL may go once the browser has taken it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
