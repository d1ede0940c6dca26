// The stage graph of a multi-stage Dockerfile: stages by index and name,
// what each depends on (FROM <stage>, COPY --from, RUN --mount from=), the
// stages a target needs and an order in which independent stages can run
// side by side.
import { parseDockerReference } from '@berth/images';
import type { ImageReference } from '@berth/images';
import { invalid, notFound } from '@berth/base';
import type {
  ArgInstruction,
  Dockerfile,
  FromInstruction,
  Instruction,
} from './parser.js';
import { DockerfileError } from './parser.js';
import { BuildArgs, StageScope, globalScope } from './expand.js';
import { Lexer } from './lex.js';

export interface Stage {
  readonly index: number;
  /** `AS name`, lower-cased. */
  readonly name?: string;
  readonly from: FromInstruction;
  /** The instructions after FROM, in order. */
  readonly instructions: readonly Instruction[];
}

export interface StageGraph {
  /** The ARG lines before the first FROM. */
  readonly globalArgs: readonly ArgInstruction[];
  readonly stages: readonly Stage[];
  readonly byName: ReadonlyMap<string, number>;
}

export type BaseRef =
  | { readonly kind: 'scratch' }
  | { readonly kind: 'stage'; readonly index: number }
  | { readonly kind: 'image'; readonly name: string; readonly reference: ImageReference };

/** Where a stage takes files from besides its base. */
export type SourceRef = { readonly kind: 'stage'; readonly index: number } | { readonly kind: 'image'; readonly name: string };

export interface StagePlan {
  readonly index: number;
  readonly name?: string;
  /** The FROM image, expanded with the global ARGs. */
  readonly base: BaseRef;
  readonly platform?: string;
  /** Stages this one needs first (its base stage and any --from stages), sorted. */
  readonly dependsOn: readonly number[];
  /** Images (not stages) named by COPY --from or RUN --mount from=. */
  readonly images: readonly string[];
}

export interface BuildPlan {
  readonly graph: StageGraph;
  readonly stages: readonly StagePlan[];
  /** The stage the build produces. */
  readonly target: number;
  /** The stages the target needs, itself included, ascending. */
  readonly needed: readonly number[];
  /** needed in levels: each level's stages depend only on earlier levels. */
  readonly levels: readonly (readonly number[])[];
  /** The global ARG scope (values after --build-arg). */
  readonly globals: ReadonlyMap<string, string | undefined>;
}

export interface PlanOptions {
  /** `--target`: a stage name; default the last stage. */
  readonly target?: string;
  readonly buildArgs?: Readonly<Record<string, string | undefined>>;
  /** Predefined global args (TARGETPLATFORM, BUILDPLATFORM, ...). */
  readonly builtinArgs?: Readonly<Record<string, string>>;
  readonly filename?: string;
}

/** Splits a Dockerfile into its stages. */
export function stageGraph(df: Dockerfile, filename = 'Dockerfile'): StageGraph {
  if (df.instructions.length === 0) throw invalid(`${filename}: file with no instructions`);
  const globalArgs: ArgInstruction[] = [];
  const stages: { index: number; name?: string; from: FromInstruction; instructions: Instruction[] }[] = [];
  const byName = new Map<string, number>();
  for (const inst of df.instructions) {
    if (inst.kind === 'FROM') {
      const index = stages.length;
      if (inst.name !== undefined) {
        if (byName.has(inst.name)) {
          throw new DockerfileError(`duplicate stage name ${JSON.stringify(inst.name)}`, inst.startLine, inst.endLine, filename);
        }
        byName.set(inst.name, index);
      }
      stages.push({ index, from: inst, instructions: [], ...(inst.name !== undefined ? { name: inst.name } : {}) });
      continue;
    }
    const cur = stages[stages.length - 1];
    if (cur === undefined) {
      if (inst.kind === 'ARG') {
        globalArgs.push(inst);
        continue;
      }
      throw new DockerfileError('no build stage in current context', inst.startLine, inst.endLine, filename);
    }
    cur.instructions.push(inst);
  }
  if (stages.length === 0) throw invalid(`${filename}: no build stage in current context`);
  return { globalArgs, stages, byName };
}

/** Finds a stage by `--target` name; Docker's error when there is none. */
export function findTarget(graph: StageGraph, target: string): number {
  const i = graph.byName.get(target.toLowerCase());
  if (i === undefined) throw notFound(`target stage ${JSON.stringify(target)} could not be found`);
  return i;
}

/**
 * Resolves a stage reference (FROM or --from) seen in stage `current`: a
 * name or index of an earlier stage, else an image.
 */
export function resolveStageRef(graph: StageGraph, ref: string, current: number): SourceRef {
  const named = graph.byName.get(ref.toLowerCase());
  if (named !== undefined && named < current) return { kind: 'stage', index: named };
  if (/^\d+$/.test(ref)) {
    const index = Number(ref);
    if (index >= current) {
      throw invalid(`invalid from flag value ${ref}: refers to current or future build stage`);
    }
    return { kind: 'stage', index };
  }
  return { kind: 'image', name: ref };
}

/** The `from=` of a `--mount` spec, if any. */
export function mountFrom(spec: string): string | undefined {
  for (const field of spec.split(',')) {
    const eq = field.indexOf('=');
    if (eq > 0 && field.slice(0, eq).trim().toLowerCase() === 'from') return field.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Plans a build: resolves every stage's base and sources (expanding FROM
 * with the global ARGs, --from with the stage's ARG/ENV lines), picks the
 * target and the stages it needs, and levels them for parallel runs.
 */
export function planBuild(df: Dockerfile, options: PlanOptions = {}): BuildPlan {
  const filename = options.filename ?? 'Dockerfile';
  const graph = stageGraph(df, filename);
  const escape = df.directives.escape;
  const buildArgs = new BuildArgs(options.buildArgs ?? {});
  const globals = globalScope(graph.globalArgs, buildArgs, escape, options.builtinArgs ?? {});
  const globalLookup = (n: string): string | undefined => globals.get(n);
  const lex = new Lexer(escape);
  const scopes: StageScope[] = [];
  const plans: StagePlan[] = [];
  const fail = (inst: Instruction, err: unknown): never => {
    throw new DockerfileError(err instanceof Error ? err.message : String(err), inst.startLine, inst.endLine, filename);
  };

  for (const stage of graph.stages) {
    let image: string;
    let platform: string | undefined;
    try {
      image = lex.processWord(stage.from.image, globalLookup);
      if (stage.from.platform !== undefined) platform = lex.processWord(stage.from.platform, globalLookup);
    } catch (err) {
      return fail(stage.from, err);
    }
    if (image === '') fail(stage.from, `base name (${stage.from.image}) should not be blank`);
    const deps = new Set<number>();
    const images = new Set<string>();
    let base: BaseRef;
    let scope: StageScope;
    const baseStage = graph.byName.get(image.toLowerCase());
    if (baseStage !== undefined && baseStage < stage.index) {
      base = { kind: 'stage', index: baseStage };
      deps.add(baseStage);
      scope = (scopes[baseStage] as StageScope).fork();
    } else {
      if (image === 'scratch') base = { kind: 'scratch' };
      else {
        let reference: ImageReference;
        try {
          reference = parseDockerReference(image);
        } catch (err) {
          return fail(stage.from, err);
        }
        base = { kind: 'image', name: image, reference };
      }
      scope = new StageScope(buildArgs, globals, [], escape);
    }
    scopes.push(scope);
    const addRef = (inst: Instruction, ref: string): void => {
      let r: SourceRef;
      try {
        r = resolveStageRef(graph, lex.processWord(ref, scope.lookup), stage.index);
      } catch (err) {
        return fail(inst, err);
      }
      if (r.kind === 'stage') deps.add(r.index);
      else images.add(r.name);
    };
    for (const inst of stage.instructions) {
      if (inst.kind === 'ARG') scope.declare(inst);
      else if (inst.kind === 'ENV') {
        try {
          scope.apply(inst);
        } catch (err) {
          fail(inst, err);
        }
      } else if (inst.kind === 'COPY' && inst.from !== undefined) addRef(inst, inst.from);
      else if (inst.kind === 'RUN') {
        for (const m of inst.mounts) {
          const from = mountFrom(m);
          if (from !== undefined) addRef(inst, from);
        }
      }
    }
    plans.push({
      index: stage.index,
      base,
      dependsOn: [...deps].sort((a, b) => a - b),
      images: [...images],
      ...(stage.name !== undefined ? { name: stage.name } : {}),
      ...(platform !== undefined ? { platform } : {}),
    });
  }

  const target = options.target !== undefined ? findTarget(graph, options.target) : graph.stages.length - 1;
  const neededSet = new Set<number>();
  const visit = [target];
  while (visit.length > 0) {
    const i = visit.pop() as number;
    if (neededSet.has(i)) continue;
    neededSet.add(i);
    visit.push(...(plans[i]?.dependsOn ?? []));
  }
  const needed = [...neededSet].sort((a, b) => a - b);
  // Dependencies always point to earlier stages, so one ascending pass levels them.
  const level = new Map<number, number>();
  const levels: number[][] = [];
  for (const i of needed) {
    const l = Math.max(-1, ...(plans[i]?.dependsOn ?? []).map((d) => level.get(d) ?? 0)) + 1;
    level.set(i, l);
    (levels[l] ??= []).push(i);
  }
  return { graph, stages: plans, target, needed, levels, globals };
}
