"""Real-browser tests of the dashboard: Debian's headless Chromium driven by Selenium 4."""
