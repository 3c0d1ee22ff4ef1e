(function_definition body: (compound_statement) @body) @scope.function
(lambda_expression body: (compound_statement) @body) @scope.function
(class_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @scope.class
(struct_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @scope.class
(namespace_definition name: (namespace_identifier) @name body: (declaration_list) @body) @scope.class
(enum_specifier name: (type_identifier) @name body: (enumerator_list) @body) @scope.class
