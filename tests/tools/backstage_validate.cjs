// Validates Backstage entities with Backstage's own code: @backstage/catalog-model's entity
// policies (envelope, field formats, no foreign root fields, schema) plus the kind's validator
// (Component from catalog-model, Template from @backstage/plugin-scaffolder-common).
// Usage: node tests/tools/backstage_validate.cjs <entity.json>...  Exit 1 on the first problem.
const path = require("path");
const fs = require("fs");
const modules = path.join(__dirname, "../../.tools/backstage/node_modules");
const model = require(path.join(modules, "@backstage/catalog-model"));
const scaffolder = require(path.join(modules, "@backstage/plugin-scaffolder-common"));

const policies = model.EntityPolicies.allOf([
  new model.DefaultNamespaceEntityPolicy(),
  new model.NoForeignRootFieldsEntityPolicy(),
  new model.FieldFormatEntityPolicy(),
  new model.SchemaValidEntityPolicy(),
]);
const validators = {
  Component: model.componentEntityV1alpha1Validator,
  Template: scaffolder.templateEntityV1beta3Validator,
};

(async () => {
  for (const file of process.argv.slice(2)) {
    const entity = JSON.parse(fs.readFileSync(file, "utf8"));
    try {
      await policies.enforce(entity);
      const validator = validators[entity.kind];
      if (!validator) throw new Error(`no validator for kind ${entity.kind}`);
      if (!(await validator.check(entity))) throw new Error(`not a ${entity.kind} entity`);
      console.log(`${file}: valid ${entity.apiVersion} ${entity.kind}`);
    } catch (error) {
      console.log(`${file}: ${error.message}`);
      process.exit(1);
    }
  }
})();
