// @pulumi/gcp and @pulumi/command are optional peer dependencies: loaded when a component that needs
// one is constructed, never when sitelink is imported, so a program that uses neither installs neither.
// Files that use one import its types only (`import type * as gcp`) and, where they create
// resources, shadow that name with the loaded module (`const gcp = loadGcp(…)`).

export type OptionalPeer = "@pulumi/gcp" | "@pulumi/command";

/** The package `name`, or a clear error naming the component that needs it and how to install it. */
export function optionalPeer<T>(name: OptionalPeer, component: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === "MODULE_NOT_FOUND" && e.message.startsWith(`Cannot find module '${name}'`)) {
      throw new Error(`${component} needs the package ${name}: npm install ${name}`);
    }
    throw error;
  }
}
