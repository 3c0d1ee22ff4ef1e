(class_declaration name: (identifier) @name body: (class_body) @body) @scope.class
(record_declaration name: (identifier) @name body: (class_body) @body) @scope.class
(interface_declaration name: (identifier) @name body: (interface_body) @body) @scope.class
(enum_declaration name: (identifier) @name body: (enum_body) @body) @scope.class
(method_declaration name: (identifier) @name body: (block) @body) @scope.function
(constructor_declaration name: (identifier) @name body: (constructor_body) @body) @scope.function
(lambda_expression body: (block) @body) @scope.function
