/** The version berth reports (`berth version`, `--version`). */
export const CLI_VERSION = '0.1.0';
