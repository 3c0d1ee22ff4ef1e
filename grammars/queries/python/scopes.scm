(function_definition name: (identifier) @name body: (block) @body) @scope.function
(class_definition name: (identifier) @name body: (block) @body) @scope.class
