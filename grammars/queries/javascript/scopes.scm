(function_declaration name: (identifier) @name body: (statement_block) @body) @scope.function
(generator_function_declaration name: (identifier) @name body: (statement_block) @body) @scope.function
(method_definition name: (property_identifier) @name body: (statement_block) @body) @scope.function
(arrow_function body: (statement_block) @body) @scope.function
(function_expression body: (statement_block) @body) @scope.function
(class_declaration name: (_) @name body: (class_body) @body) @scope.class
