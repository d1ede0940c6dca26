/**
 * What the rest of the engine needs from images: resolving a reference the
 * way `docker run` does (name, short or full ID, digest) to the image's ID
 * (its config digest), config and the chain ID of its unpacked snapshot.
 */
import type { ImageConfig } from '../containers/config.js';

export interface ResolvedImage {
  /** `sha256:…` of the config blob: Docker's image ID. */
  readonly id: string;
  /** The image record's name in the supervisor (`docker.io/library/busybox:latest`), if it was found by name. */
  readonly name: string | undefined;
  /** The manifest's digest (for RepoDigests). */
  readonly manifestDigest: string;
  /** The config's `config` section (Cmd, Env, …). */
  readonly config: ImageConfig;
  /** The top layer's chain ID: the committed snapshot to prepare a container's rootfs on. */
  readonly chainId: string;
  readonly os: string;
  readonly architecture: string;
}

export interface ImageResolver {
  /** The image, or a NotFound BerthError with Docker's wording (`No such image: x`). */
  resolve(ref: string): Promise<ResolvedImage>;
  /** Make sure the image's layers are unpacked in the snapshotter (after an import without unpack). */
  ensureUnpacked(img: ResolvedImage): Promise<void>;
}
