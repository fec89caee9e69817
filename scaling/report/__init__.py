"""The report stage: figures and a Markdown page from a sweep's fits.json and runs."""
