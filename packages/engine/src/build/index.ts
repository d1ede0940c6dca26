// Dockerfile front end: parse, expand, plan stages, .dockerignore.
export {
  parseDockerfile,
  parseTrigger,
  parseHeredocWord,
  heredocsFromLine,
  chompHeredoc,
  splitWords,
  parseDuration,
  DockerfileError,
  HEALTHCHECK_DEFAULTS,
  MAX_DOCKERFILE_SIZE,
} from './parser.js';
export type * from './parser.js';
export {
  Lexer,
  lookupIn,
  lookupEnvList,
  NO_VARS,
  PROXY_ARGS,
  EXPANDING_INSTRUCTIONS,
  expandInstruction,
  expandHeredoc,
  BuildArgs,
  StageScope,
  globalScope,
} from './expand.js';
export type { VarLookup, LexOptions, WordResult } from './expand.js';
export { stageGraph, planBuild, findTarget, resolveStageRef, mountFrom } from './stages.js';
export type { Stage, StageGraph, BaseRef, SourceRef, StagePlan, BuildPlan, PlanOptions } from './stages.js';
export { parseDockerignore, PatternMatcher, contextFiles, cleanPath } from './dockerignore.js';
export type { Pattern, ContextEntry, ContextOptions } from './dockerignore.js';
